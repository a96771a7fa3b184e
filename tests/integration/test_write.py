"""The write stage through Ray Data: LabelRows land under task=..., with the derived schema, and a
partition is staged, then swapped in whole."""

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray.data

from pipelines.stages.write import write_annotations
from pipelines.storage.output import STAGING_DIR, commit_partition, prepare_target
from schemas.rows import LABEL_ROW_SCHEMA
from tests.integration.conftest import read_output
from tests.labelled import shapes_rows
from tests.rows import assert_each_once

pytestmark = pytest.mark.integration


def test_rows_are_written_by_task_into_a_staged_then_swapped_partition(tmp_path, ray_local):
    rows, _ = shapes_rows(tmp_path / "shapes", count=4)
    table = pa.Table.from_pylist([row.model_dump() for row in rows], schema=LABEL_ROW_SCHEMA)
    target = prepare_target(str(tmp_path / "labels"), False, ("run_date", "2026-11-21"))
    write_annotations(ray.data.from_arrow(table).repartition(3), target)
    assert not (tmp_path / "labels" / "run_date=2026-11-21").exists()  # staged only: the run commits it
    commit_partition(target)

    partition = tmp_path / "labels" / "run_date=2026-11-21"
    assert sorted(p.name for p in partition.iterdir()) == ["task=caption", "task=detect", "task=segment"]
    assert not (tmp_path / "labels" / STAGING_DIR).exists()
    for path in partition.rglob("*.parquet"):
        assert pq.read_schema(path).remove_metadata() == LABEL_ROW_SCHEMA.remove(
            LABEL_ROW_SCHEMA.get_field_index("task"))
    written = read_output(str(tmp_path / "labels"))
    assert_each_once(written, len(rows))
    assert set(written.column("run_date").to_pylist()) == {"2026-11-21"}
