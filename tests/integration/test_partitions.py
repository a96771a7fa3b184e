"""Scheduled-style incremental runs: each writes its own partition, and a rerun replaces it."""

import datetime
import json
import os
import shutil
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.run import run_job
from tests.integration.conftest import read_output, short_budgets
from tests.rows import assert_each_once

pytestmark = pytest.mark.integration

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples"
UTC = datetime.timezone.utc
DAY_1 = datetime.datetime(2026, 11, 21, tzinfo=UTC)
DAY_2 = DAY_1 + datetime.timedelta(days=1)
DAY_3 = DAY_2 + datetime.timedelta(days=1)


def arrive(src: Path, dst: Path, when: datetime.datetime) -> str:
    """Copy an image into the bucket as if it had been uploaded at `when`."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(src, dst)
    os.utime(dst, (when.timestamp(), when.timestamp()))
    return f"file://{dst}"


def test_two_days_and_a_rerun_leave_exactly_one_row_per_image_and_task(tmp_path, ray_local, tiny_model_dir):
    bucket, output = tmp_path / "bucket", tmp_path / "labels"
    day_1 = [arrive(SAMPLES / name, bucket / "d1" / name, DAY_1 + datetime.timedelta(hours=3))
             for name in ("street.jpg", "portrait.png")]
    day_2 = [arrive(SAMPLES / name, bucket / "d2" / name, DAY_2 + datetime.timedelta(hours=5))
             for name in ("square.bmp", "wide.webp", "nested/tile.gif")]
    common = {"output": str(output), "model": tiny_model_dir, "tasks": "detect,caption", "classes": "car",
              "max_new_tokens": short_budgets("detect,caption")}

    def run(**flags):
        summary = run_job({**common, **flags, "summary_uri": str(tmp_path / "runs" / f"{flags['run_id']}.json")})
        assert summary["status"] == "succeeded", summary
        assert json.loads((tmp_path / "runs" / f"{flags['run_id']}.json").read_text()) == summary
        return summary

    first = run(input=str(bucket), since=DAY_1.isoformat(), until=DAY_2.isoformat(),
                partition="run_date=2026-11-21", run_id="day-1")
    assert (first["images"], first["rows"], first["outside_window_files"]) == (2, 4, 3)
    # the second day lists its files in a manifest instead of a time window
    pq.write_table(pa.table({"uri": day_2}), tmp_path / "day2.parquet")
    second = run(input_manifest=str(tmp_path / "day2.parquet"), partition="run_date=2026-11-22", run_id="day-2")
    assert (second["images"], second["rows"]) == (3, 6)
    rerun = run(input=str(bucket), since=DAY_1.isoformat(), until=DAY_2.isoformat(),
                partition="run_date=2026-11-21", run_id="day-1-again")
    assert rerun["rows"] == 4

    table = read_output(str(output))
    keys = assert_each_once(table, 10, key=("source_uri", "task"))
    assert {uri for uri, _ in keys} == set(day_1 + day_2)
    by_day = Counter(zip(table.column("run_date").to_pylist(), table.column("run_id").to_pylist()))
    assert by_day == {("2026-11-21", "day-1-again"): 4, ("2026-11-22", "day-2"): 6}
    # the rerun's staging copy was moved in, and nothing else is left behind
    assert sorted(p.name for p in output.iterdir()) == ["run_date=2026-11-21", "run_date=2026-11-22"]
    for day, rows in (("2026-11-21", 4), ("2026-11-22", 6)):
        assert json.loads((output / f"run_date={day}" / "_summary.json").read_text())["rows"] == rows
