"""run_job: a summary in every case (succeeded, refused, failed), written where the scheduler reads it."""

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray

import pipelines.run
from pipelines.run import run_job
from pipelines.storage.output import OutputExistsError, prepare_target

SAMPLES = str(Path(__file__).resolve().parents[1] / "data" / "samples")


@pytest.fixture
def flags(tmp_path, tiny_model_dir):
    return {"input": SAMPLES, "output": str(tmp_path / "out"), "model": tiny_model_dir, "tasks": "caption",
            "summary_uri": str(tmp_path / "runs" / "r1.json"), "run_id": "r1"}


def written(flags):
    return json.loads(Path(flags["summary_uri"]).read_text())


@pytest.mark.parametrize(
    "change, message",
    [
        ({"tasks": "nope"}, "unknown task 'nope'"),
        ({"input": None}, "give exactly one of --input and --input-manifest"),
        ({"input_manifest": "m.csv"}, "give exactly one of --input and --input-manifest"),
        ({"since": "yesterday"}, "--since: Input should be a valid datetime"),
        ({"since": "2026-11-22", "until": "2026-11-21"}, "is not before --until"),
        ({"partition": "run_date"}, "is not key=value"),
        ({"partition": "task=x"}, "'task' is already the dataset's inner partition"),
        ({"partition": "_d=1"}, "is not key=value"),
        ({"partition": "d=1", "overwrite": True}, "--partition replaces only its own partition"),
    ],
)
def test_refused_runs_write_their_summary_and_exit_2(flags, change, message, monkeypatch):
    monkeypatch.setattr(ray, "init", lambda *a, **k: pytest.fail("Ray was started"))
    summary = run_job({k: v for k, v in {**flags, **change}.items() if v is not None})
    assert summary["status"] == "refused" and summary["exit_code"] == 2 and message in summary["error"]
    assert written(flags) == summary
    assert not Path(flags["output"]).exists()


def test_a_run_that_fails_after_the_checks_writes_its_summary_and_exits_1(flags, monkeypatch, capsys):
    def broken(cfg, job):
        raise RuntimeError("the cluster went away")

    monkeypatch.setattr(pipelines.run, "execute", broken)
    summary = run_job({**flags, "partition": "run_date=2026-11-22"})
    assert (summary["status"], summary["exit_code"], summary["run_id"]) == ("failed", 1, "r1")
    assert summary["error"] == "RuntimeError: the cluster went away" and summary["partition"] == "run_date=2026-11-22"
    assert written(flags) == summary
    assert "Traceback" in capsys.readouterr().err


def test_nothing_new_writes_an_empty_partition_without_starting_ray(flags, monkeypatch, tmp_path):
    monkeypatch.setattr(ray, "init", lambda *a, **k: pytest.fail("Ray was started for no input"))
    summary = run_job({**flags, "since": "2999-01-01", "partition": "run_date=2999-01-01"})
    assert summary["status"] == "succeeded" and summary["exit_code"] == 0
    assert (summary["rows"], summary["images"], summary["outside_window_files"]) == (0, 0, 5)
    partition = tmp_path / "out" / "run_date=2999-01-01"
    assert sorted(p.name for p in partition.iterdir()) == ["_job.json", "_summary.json"]
    assert json.loads((partition / "_summary.json").read_text())["rows"] == 0
    assert written(flags)["status"] == "succeeded"


def test_partitions_go_only_into_a_dataset_of_partitions(tmp_path):
    (tmp_path / "flat" / "task=caption").mkdir(parents=True)
    with pytest.raises(OutputExistsError, match="'task=caption', which is not a run_date=... partition"):
        prepare_target(str(tmp_path / "flat"), False, ("run_date", "x"))
    (tmp_path / "parts" / "run_date=a").mkdir(parents=True)
    (tmp_path / "parts" / "_staging").mkdir()
    (tmp_path / "parts" / "_summary.json").write_text("{}")
    target = prepare_target(str(tmp_path / "parts"), False, ("run_date", "b"))
    assert target.path == str(tmp_path / "parts" / "run_date=b")
    assert (tmp_path / "parts" / "run_date=a").exists()


def test_a_rerun_that_would_empty_a_good_partition_keeps_it_and_exits_1_unless_told(flags, monkeypatch, tmp_path):
    monkeypatch.setattr(ray, "init", lambda *a, **k: pytest.fail("Ray was started for no input"))
    good = tmp_path / "out" / "run_date=2026-11-21" / "task=caption"
    good.mkdir(parents=True)
    pq.write_table(pa.table({"image_id": ["a", "b"], "status": ["ok", "ok"]}), good / "0.parquet")
    wrong_window = {**flags, "since": "2999-01-01", "partition": "run_date=2026-11-21"}  # finds nothing

    summary = run_job(wrong_window)
    assert (summary["status"], summary["exit_code"]) == ("failed", 1)
    assert summary["error"].startswith("kept the old partition run_date=2026-11-21: the new rows are worse "
                                       "(caption: 0 ok rows where the old partition has 2;")
    assert summary["kept_old_partition"]["old_rows_per_task_and_status"] == {"caption": {"ok": 2}}
    assert written(flags) == summary and (good / "0.parquet").exists()

    summary = run_job({**wrong_window, "replace_worse": True})
    assert (summary["status"], summary["rows"]) == ("succeeded", 0)
    assert not good.exists()
