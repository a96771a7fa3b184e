"""The last stage: stream the LabelRows to hive-partitioned Parquet through Ray Data. Where they go,
and what a partition's swap and the summary are, is `storage/output.py`."""

from __future__ import annotations

import ray.data

from pipelines.stages.contract import Rows, StageContract
from pipelines.storage.filesystems import arrow_filesystem
from pipelines.storage.output import PARTITION_COLUMNS, OutputTarget
from schemas.rows import LABEL_ROW_SCHEMA

# A sink: it reads every output column (the partition columns among them) and gives no rows on.
CONTRACT = StageContract("write", reads=tuple(LABEL_ROW_SCHEMA.names), rows=Rows.FILTER, keeps_columns=False)


def write_annotations(ds: ray.data.Dataset, target: OutputTarget) -> None:
    """Stream the dataset to `<target.work_path>/task=<name>/*.parquet`; the driver never holds the rows.

    Files are added next to those of an earlier attempt being resumed (new names each run). A partition
    is written whole under `_staging/`; the caller then checks it against the old one and swaps it in
    (`storage/output.py`: `check_replacement`, `commit_partition`), so a failed or refused run leaves the
    old partition as it was (and its staging for a rerun to resume), and a rerun replaces the partition
    rather than adding to it.
    """
    ds.write_parquet(target.work_path, filesystem=arrow_filesystem(target.filesystem),
                     partition_cols=PARTITION_COLUMNS)
