"""Daily incremental pre-labelling (Airflow 3): one Ray job per day labels the images uploaded that day.

Each DAG run submits `jobs/annotate.py` to a running Ray cluster with `--since`/`--until` set to its
day (01:00 UTC to 01:00 UTC) and `--partition run_date=<day>`, waits for it, and fails when the job or
its summary reports a failure. The day is the run's logical date: a scheduled or backfilled run's
interval, or the date given to `airflow dags trigger --logical-date` / `airflow dags test`. The
submission id comes from the DAG run, so a retried task finds the job it already submitted; rerunning
a day (clearing its DAG run, or triggering it again) replaces that day's partition, unless the new rows
are clearly worse: then the job keeps the old partition and `check` fails, saying so (trigger the day
with the param `replace_worse` to replace it anyway).

Deploy, without editing this repository (docs/scheduling.md):
- Airflow workers: this repository readable (the DAG imports `pipelines/driver/schedule.py` from it and
  uploads it as the job's working directory); `ray[default]` of the cluster's Ray version (plain `ray`
  lacks the jobs SDK's dependencies) and, for gs:// outputs, `gcsfs`; `RAY_AUTH_TOKEN` in their
  environment when the cluster uses token auth.
- Settings: the JSON Airflow Variable `annotate_daily` (`ray_address`, `input`, `output`, `flags`,
  `entrypoint_num_gpus`), e.g. the environment variable AIRFLOW_VAR_ANNOTATE_DAILY='{"input": ...}'.
  The params of the same names override them for one run.
- The Ray head: the job's command is `python jobs/annotate.py ...`, run on the head node with the
  `python` first on the PATH of the `ray start --head` process, so start the head from an environment
  holding this project's dependencies (the cluster image of `cluster/raycluster.yaml`, or
  `source .venv/bin/activate` before `ray start --head`).
"""

from __future__ import annotations

import datetime
import json
import os
import sys
from pathlib import Path

import yaml
from airflow.sdk import Param, Variable, dag, task
from airflow.sdk.exceptions import AirflowFailException
from airflow.timetables.interval import CronDataIntervalTimetable

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # pipelines/driver/schedule.py: small helpers, tested without Airflow

from pipelines.driver.schedule import (  # noqa: E402
    SETTINGS_VARIABLE,
    annotate_entrypoint,
    day_to_label,
    day_window,
    job_finished,
    read_summary,
    resolve_settings,
    run_problems,
    submission_id_for,
    submit_once,
    summary_uri_for,
)

RUNTIME_ENV_FILE = REPO / "cluster" / "runtime_env.yaml"
DAY_STARTS_AT = datetime.time(1, 0)  # UTC; the schedule below runs each day once it is complete


def _client(address: str):
    from ray.job_submission import JobSubmissionClient  # imported in tasks only: parsing the DAG stays light

    token = os.environ.get("RAY_AUTH_TOKEN")  # the cluster's token, from the Airflow workers' environment
    return JobSubmissionClient(address, headers={"Authorization": f"Bearer {token}"} if token else None)


def _runtime_env() -> dict:
    runtime_env = yaml.safe_load(RUNTIME_ENV_FILE.read_text())
    runtime_env["working_dir"] = str(REPO)  # the repository this DAG file belongs to is uploaded
    return runtime_env


def _override(description: str, type_: str) -> Param:
    """A per-run override of a setting of the Variable: empty (None) means the Variable's value."""
    return Param(None, type=["null", type_], description=f"{description}; empty: the Variable's value")


@dag(
    dag_id="annotate_daily",
    # Data intervals of one day: a run covers files modified in [data_interval_start, data_interval_end).
    schedule=CronDataIntervalTimetable(f"{DAY_STARTS_AT.minute} {DAY_STARTS_AT.hour} * * *", timezone="UTC"),
    start_date=datetime.datetime(2026, 11, 1, tzinfo=datetime.timezone.utc),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": datetime.timedelta(minutes=5)},
    params={
        "ray_address": _override("Ray dashboard address", "string"),
        "input": _override("where new images arrive", "string"),
        "output": _override("the partitioned dataset", "string"),
        "flags": _override("further jobs/annotate.py flags (tasks, classes, model, batch size)", "string"),
        "entrypoint_num_gpus": _override("GPUs for the driver (0: workers hold them)", "number"),
        "replace_worse": Param(False, type="boolean", description="replace the day's partition even when the new "
                               "rows are clearly worse (the job's --replace-worse)"),
    },
    tags=["labelling"],
)
def annotate_daily():
    @task
    def submit(params=None, dag_run=None) -> dict:
        try:
            settings = resolve_settings(Variable.get(SETTINGS_VARIABLE, default=None, deserialize_json=True), params)
        except ValueError as err:  # a deployment without settings: retrying does not help
            raise AirflowFailException(str(err)) from None
        submission_id = submission_id_for(dag_run.dag_id, dag_run.run_id, getattr(dag_run, "clear_number", 0) or 0)
        day = day_to_label(dag_run.logical_date, dag_run.data_interval_start, dag_run.run_after, DAY_STARTS_AT)
        since, until = day_window(day, DAY_STARTS_AT)
        entrypoint = annotate_entrypoint(
            input=settings.input,
            output=settings.output,
            partition=f"run_date={day.isoformat()}",
            since=since,
            until=until,
            run_id=submission_id,
            summary_uri=summary_uri_for(settings.output, submission_id),
            flags=settings.flags,
            replace_worse=settings.replace_worse,
        )
        print(f"labelling {day} ({since.isoformat()} to {until.isoformat()}) as Ray job {submission_id}: {entrypoint}")
        submit_once(_client(settings.ray_address), submission_id, entrypoint, _runtime_env(),
                    entrypoint_num_gpus=settings.entrypoint_num_gpus)
        # What wait and check need: the settings as this task resolved them, should the Variable change meanwhile.
        return {"submission_id": submission_id, "ray_address": settings.ray_address, "output": settings.output,
                "day": day.isoformat()}

    # mode="reschedule": no worker slot is held while the job runs
    @task.sensor(poke_interval=60, timeout=24 * 3600, mode="reschedule")
    def wait(job: dict) -> bool:
        return job_finished(_client(job["ray_address"]), job["submission_id"])

    @task
    def check(job: dict) -> dict:
        submission_id = job["submission_id"]
        status = str(_client(job["ray_address"]).get_job_status(submission_id).value)
        summary = read_summary(summary_uri_for(job["output"], submission_id))
        problems = run_problems(status, summary, submission_id)
        if summary and summary.get("kept_old_partition"):
            # Airflow keeps one run per logical date; any time of the day labels that day, so now's is free.
            logical_date = f"{job['day']}T{datetime.datetime.now(datetime.timezone.utc):%H:%M:%S}+00:00"
            problems.append(f"from Airflow: airflow dags trigger annotate_daily --logical-date {logical_date} "
                            f"--conf {json.dumps({'replace_worse': True})!r}")
        if problems:  # no retry: the job ran; rerun the day by clearing its DAG run
            raise AirflowFailException(f"Ray job {submission_id}: " + "; ".join(problems))
        return {key: summary[key] for key in ("partition", "images", "rows", "rows_per_task_and_status")}

    job = submit()
    wait(job) >> check(job)


annotate_daily()
