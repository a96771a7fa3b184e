"""Helpers of the Airflow DAG, without Airflow: submission ids, the job's command, the run's verdict."""

import datetime
import json

from pipelines.driver.schedule import (
    annotate_args,
    annotate_entrypoint,
    read_summary,
    run_problems,
    submission_id_for,
    summary_uri_for,
)
from tests.unit.test_cluster import accepted

UTC = datetime.timezone.utc


def test_submission_ids_are_stable_per_run_and_new_per_clear():
    run = "scheduled__2026-11-21T01:00:00+00:00"
    assert submission_id_for("annotate_daily", run) == submission_id_for("annotate_daily", run)
    assert submission_id_for("annotate_daily", run) == "annotate_daily__scheduled__2026-11-21T01_00_00_00_00"
    assert submission_id_for("annotate_daily", run, 1) != submission_id_for("annotate_daily", run)
    assert submission_id_for("d", "manual__x") != submission_id_for("d", "manual__y")


def test_the_dag_entrypoint_is_accepted_by_the_job():
    since = datetime.datetime(2026, 11, 21, 1, tzinfo=UTC)
    entrypoint = annotate_entrypoint(
        input="gs://b/in dir/", output="gs://b/labels/", partition="run_date=2026-11-21", since=since,
        until=since + datetime.timedelta(days=1), run_id="sid", summary_uri=summary_uri_for("gs://b/labels/", "sid"),
        flags=["--tasks", "detect,caption", "--classes", "car,traffic light"])
    cfg = accepted(annotate_args(entrypoint))
    assert cfg.input == "gs://b/in dir/" and cfg.classes == ["car", "traffic light"]
    assert (cfg.since, cfg.until) == (since, since + datetime.timedelta(days=1))
    assert cfg.summary_uri == "gs://b/labels/_runs/sid.json" and cfg.partition_key_value == ("run_date", "2026-11-21")


def summary(**changes):
    return {"status": "succeeded", "run_id": "sid", "error": None,
            "rows_per_task_and_status": {"caption": {"ok": 3, "image_error": 1}}, **changes}


def test_a_run_fails_on_a_failed_job_or_summary_or_model_errors():
    assert run_problems("SUCCEEDED", summary(), "sid") == []  # bad input files are data, not a failed run
    assert run_problems("FAILED", None, "sid") == ["the job ended FAILED and wrote no summary"]
    assert run_problems("FAILED", summary(status="failed", error="RuntimeError: x"), "sid") == [
        "the Ray job ended FAILED", "the run failed: RuntimeError: x"]
    assert run_problems("SUCCEEDED", summary(run_id="old"), "sid") == ["the summary is of run 'old', not 'sid'"]
    errors = summary(rows_per_task_and_status={"detect": {"ok": 1, "model_error": 2}})
    assert run_problems("SUCCEEDED", errors, "sid") == ["detect: 2 model_error rows"]


def test_read_summary(tmp_path):
    assert read_summary(str(tmp_path / "none.json")) is None
    (tmp_path / "s.json").write_text(json.dumps(summary()))
    assert read_summary(f"file://{tmp_path / 's.json'}") == summary()
