"""Daily incremental pre-labelling (Airflow 3): one Ray job per day labels the images uploaded that day.

Each DAG run submits `jobs/annotate.py` to a running Ray cluster with `--since`/`--until` set to the
run's data interval and `--partition run_date=<day>`, waits for it, and fails when the job or its
summary reports a failure. The submission id comes from the DAG run, so a retried task finds the
job it already submitted; rerunning a day (clearing its DAG run) replaces that day's partition.

Deploy: put this repository where the Airflow workers can read it (the DAG imports its helpers from
`pipelines/driver/schedule.py` and uploads the repository as the job's working directory), install `ray`
(the cluster's version) and, for gs:// outputs, `gcsfs` into the Airflow environment, and set the
DAG's params (or trigger with a config). See README "Scheduling with Airflow".
"""

from __future__ import annotations

import datetime
import os
import shlex
import sys
from pathlib import Path

import yaml
from airflow.sdk import Param, dag, task
from airflow.sdk.exceptions import AirflowFailException
from airflow.timetables.interval import CronDataIntervalTimetable

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # pipelines/driver/schedule.py: small helpers, tested without Airflow

from pipelines.driver.schedule import (  # noqa: E402
    annotate_entrypoint,
    job_finished,
    read_summary,
    run_problems,
    submission_id_for,
    submit_once,
    summary_uri_for,
)

RUNTIME_ENV_FILE = REPO / "cluster" / "runtime_env.yaml"


def _client(address: str):
    from ray.job_submission import JobSubmissionClient  # imported in tasks only: parsing the DAG stays light

    token = os.environ.get("RAY_AUTH_TOKEN")  # the cluster's token, from the Airflow workers' environment
    return JobSubmissionClient(address, headers={"Authorization": f"Bearer {token}"} if token else None)


def _runtime_env() -> dict:
    runtime_env = yaml.safe_load(RUNTIME_ENV_FILE.read_text())
    runtime_env["working_dir"] = str(REPO)  # the repository this DAG file belongs to is uploaded
    return runtime_env


@dag(
    dag_id="annotate_daily",
    # Data intervals of one day: a run covers files modified in [data_interval_start, data_interval_end).
    schedule=CronDataIntervalTimetable("0 1 * * *", timezone="UTC"),
    start_date=datetime.datetime(2026, 11, 1, tzinfo=datetime.timezone.utc),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": datetime.timedelta(minutes=5)},
    params={
        "ray_address": Param("http://127.0.0.1:8265", type="string", description="Ray dashboard address"),
        "input": Param("gs://YOUR_BUCKET/incoming/", type="string", description="where new images arrive"),
        "output": Param("gs://YOUR_BUCKET/labels/", type="string", description="the partitioned dataset"),
        "flags": Param("--tasks detect,caption --classes car,person", type="string",
                       description="further jobs/annotate.py flags (tasks, classes, model, batch size)"),
        "entrypoint_num_gpus": Param(0, type="number", description="GPUs for the driver (0: workers hold them)"),
    },
    tags=["labelling"],
)
def annotate_daily():
    @task
    def submit(params=None, dag_run=None, data_interval_start=None, data_interval_end=None) -> str:
        submission_id = submission_id_for(dag_run.dag_id, dag_run.run_id, getattr(dag_run, "clear_number", 0) or 0)
        entrypoint = annotate_entrypoint(
            input=params["input"],
            output=params["output"],
            partition=f"run_date={data_interval_start.date().isoformat()}",
            since=data_interval_start,
            until=data_interval_end,
            run_id=submission_id,
            summary_uri=summary_uri_for(params["output"], submission_id),
            flags=shlex.split(params["flags"]),
        )
        submit_once(_client(params["ray_address"]), submission_id, entrypoint, _runtime_env(),
                    entrypoint_num_gpus=params["entrypoint_num_gpus"])
        return submission_id

    # mode="reschedule": no worker slot is held while the job runs
    @task.sensor(poke_interval=60, timeout=24 * 3600, mode="reschedule")
    def wait(submission_id: str, params=None) -> bool:
        return job_finished(_client(params["ray_address"]), submission_id)

    @task
    def check(submission_id: str, params=None) -> dict:
        status = str(_client(params["ray_address"]).get_job_status(submission_id).value)
        summary = read_summary(summary_uri_for(params["output"], submission_id))
        problems = run_problems(status, summary, submission_id)
        if problems:  # no retry: the job ran; rerun the day by clearing its DAG run
            raise AirflowFailException(f"Ray job {submission_id}: " + "; ".join(problems))
        return {key: summary[key] for key in ("partition", "images", "rows", "rows_per_task_and_status")}

    submission_id = submit()
    wait(submission_id) >> check(submission_id)


annotate_daily()
