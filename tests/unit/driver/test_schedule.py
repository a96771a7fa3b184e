"""Helpers of the Airflow DAG, without Airflow: submission ids, the job's command, the run's verdict."""

import datetime
import json

import pytest

from pipelines.driver.schedule import (
    SETTINGS_DEFAULTS,
    RunSettings,
    annotate_args,
    annotate_entrypoint,
    day_to_label,
    day_window,
    read_summary,
    resolve_settings,
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


VARIABLE = {"input": "gs://b/in/", "output": "gs://b/labels/", "flags": "--tasks detect --classes 'traffic light'"}


def test_settings_come_from_the_variable_and_params_override_them_per_run():
    assert resolve_settings(VARIABLE, {"input": None, "output": None, "flags": None}) == RunSettings(
        ray_address=SETTINGS_DEFAULTS["ray_address"], input="gs://b/in/", output="gs://b/labels/",
        flags=("--tasks", "detect", "--classes", "traffic light"), entrypoint_num_gpus=0.0, replace_worse=False)
    run = resolve_settings({**VARIABLE, "ray_address": "http://head:8265", "flags": ["--tasks", "caption"]},
                           {"output": "gs://b/other/", "entrypoint_num_gpus": 1, "replace_worse": True})
    assert (run.ray_address, run.input, run.output, run.flags) == (
        "http://head:8265", "gs://b/in/", "gs://b/other/", ("--tasks", "caption"))
    assert (run.entrypoint_num_gpus, run.replace_worse) == (1.0, True)
    # the guard is only turned off per run: a standing replace_worse in the Variable is an unknown key
    with pytest.raises(ValueError, match=r"unknown keys \['replace_worse'\]"):
        resolve_settings({**VARIABLE, "replace_worse": True}, {})


@pytest.mark.parametrize("variable, params, message", [
    (None, {}, "no input or output: set them in the Airflow Variable 'annotate_daily' .*AIRFLOW_VAR_ANNOTATE_DAILY"),
    ({"input": "gs://b/in/"}, {"output": ""}, "no output:"),
    ("gs://b/in/", {}, "must be a JSON object"),
    ({**VARIABLE, "ouptut": "x"}, {}, r"unknown keys \['ouptut'\]"),
])
def test_missing_or_mistyped_settings_are_refused_with_where_to_set_them(variable, params, message):
    with pytest.raises(ValueError, match=message):
        resolve_settings(variable, params)


ONE_AM = datetime.time(1, 0)


@pytest.mark.parametrize("logical_date, interval_start, run_after, day", [
    # scheduled (and backfilled): the logical date is the interval's start
    (datetime.datetime(2026, 11, 21, 1, tzinfo=UTC), datetime.datetime(2026, 11, 21, 1, tzinfo=UTC),
     datetime.datetime(2026, 11, 22, 1, tzinfo=UTC), datetime.date(2026, 11, 21)),
    # `dags trigger --logical-date 2026-11-21` and `dags test annotate_daily 2026-11-21`: Airflow infers
    # the interval before that date, but the day asked for is labelled
    (datetime.datetime(2026, 11, 21, tzinfo=UTC), datetime.datetime(2026, 11, 19, 1, tzinfo=UTC),
     datetime.datetime(2026, 12, 1, 3, tzinfo=UTC), datetime.date(2026, 11, 21)),
    # triggered without a date: the last day complete when it runs
    (None, None, datetime.datetime(2026, 12, 1, 3, tzinfo=UTC), datetime.date(2026, 11, 30)),
    (None, None, datetime.datetime(2026, 12, 1, 0, 30, tzinfo=UTC), datetime.date(2026, 11, 29)),
    (None, None, datetime.datetime(2026, 12, 1, 1, tzinfo=UTC), datetime.date(2026, 11, 30)),
])
def test_the_day_labelled_is_the_day_asked_for(logical_date, interval_start, run_after, day):
    assert day_to_label(logical_date, interval_start, run_after, ONE_AM) == day


def test_a_days_window_is_one_day_from_the_schedules_hour():
    assert day_window(datetime.date(2026, 11, 21), ONE_AM) == (
        datetime.datetime(2026, 11, 21, 1, tzinfo=UTC), datetime.datetime(2026, 11, 22, 1, tzinfo=UTC))


def test_a_kept_partition_is_reported_as_such():
    kept = summary(status="failed", error="kept the old partition run_date=d: the new rows are worse (...)",
                   kept_old_partition={"partition": "run_date=d"})
    assert run_problems("FAILED", kept, "sid") == [
        "the Ray job ended FAILED", "kept the old partition run_date=d: the new rows are worse (...)"]


def test_the_entrypoint_asks_to_replace_worse_only_when_told():
    since = datetime.datetime(2026, 11, 21, 1, tzinfo=UTC)
    common = {"input": "in/", "output": "out/", "partition": "run_date=2026-11-21", "since": since,
              "until": since + datetime.timedelta(days=1), "run_id": "sid", "summary_uri": "out/_runs/sid.json",
              "flags": ["--tasks", "caption"]}
    assert "--replace-worse" not in annotate_entrypoint(**common)
    assert annotate_entrypoint(**common, replace_worse=True).endswith("--tasks caption --replace-worse")
