"""Write the annotation dataset (hive-partitioned Parquet) and its run summary."""

from __future__ import annotations

import json

import fsspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import ray.data

from pipelines.storage import arrow_filesystem

PARTITION_COLUMNS = ["task"]
SUMMARY_FILE = "_summary.json"  # leading underscore: Parquet readers skip it


class OutputExistsError(ValueError):
    """The output already holds data and --overwrite was not given."""


def prepare_output(uri: str, overwrite: bool) -> tuple[fsspec.AbstractFileSystem, str]:
    """Refuse to mix runs in one dataset: an existing, non-empty output needs `overwrite`."""
    filesystem, path = fsspec.core.url_to_fs(uri)
    if filesystem.exists(path) and (not filesystem.isdir(path) or filesystem.ls(path)):
        if not overwrite:
            raise OutputExistsError(f"output {uri} already exists; pass --overwrite to replace it")
        filesystem.rm(path, recursive=True)
    return filesystem, path


def write_annotations(ds: ray.data.Dataset, filesystem: fsspec.AbstractFileSystem, path: str) -> None:
    """Stream the dataset to `path/task=<name>/*.parquet`; the driver never holds the rows."""
    ds.write_parquet(
        path, filesystem=arrow_filesystem(filesystem), partition_cols=PARTITION_COLUMNS
    )


def _annotations(filesystem: fsspec.AbstractFileSystem, path: str) -> pads.Dataset:
    return pads.dataset(path, filesystem=arrow_filesystem(filesystem), format="parquet", partitioning="hive")


def read_annotations(uri: str, columns: list[str] | None = None) -> pa.Table:
    """A written annotation dataset (local or object storage) as one table, `task` included."""
    filesystem, path = fsspec.core.url_to_fs(uri)
    return _annotations(filesystem, path).to_table(columns=columns)


def summarize(filesystem: fsspec.AbstractFileSystem, path: str) -> dict:
    """Counts read back from what was written: rows per task and status, distinct images."""
    table = _annotations(filesystem, path).to_table(columns=["task", "status", "image_id"])
    counts = table.group_by(["task", "status"]).aggregate([("image_id", "count")])
    rows: dict[str, dict[str, int]] = {}
    for task, status, count in zip(*(counts.column(c).to_pylist() for c in ("task", "status", "image_id_count"))):
        rows.setdefault(str(task), {})[status] = count
    return {
        "rows": table.num_rows,
        "images": pc.count_distinct(table.column("image_id")).as_py() if table.num_rows else 0,
        "rows_per_task_and_status": rows,
    }


def write_summary(summary: dict, filesystem: fsspec.AbstractFileSystem, path: str) -> str:
    target = f"{path.rstrip('/')}/{SUMMARY_FILE}"
    with filesystem.open(target, "w") as handle:
        json.dump(summary, handle, indent=2, sort_keys=True)
    return filesystem.unstrip_protocol(target)
