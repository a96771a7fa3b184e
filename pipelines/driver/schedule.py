"""Running the job from a scheduler: one Ray job per scheduled run, its command, and its verdict.

The Airflow DAG (`cluster/airflow/annotate_daily.py`) only wires these together, so they are tested
without Airflow. Nothing here imports Airflow; `client` is a `ray.job_submission.JobSubmissionClient`.
"""

from __future__ import annotations

import datetime
import json
import re
import shlex
import time
from collections.abc import Sequence
from dataclasses import dataclass

import fsspec

ANNOTATE_SCRIPT = "jobs/annotate.py"
TERMINAL_STATUSES = ("SUCCEEDED", "FAILED", "STOPPED")
# Rows with these statuses mean the run did not do its work (generate raised); image_error (bad input
# files) and invalid_output (answers that do not parse) are the data's and the model's, and are kept.
FAILING_ROW_STATUSES = ("model_error",)


# The DAG's settings: one JSON Airflow Variable, so a deployment gives them without editing the repository
# (in the UI, `airflow variables set`, a secrets backend, or the AIRFLOW_VAR_ANNOTATE_DAILY environment variable).
SETTINGS_VARIABLE = "annotate_daily"
SETTINGS_DEFAULTS = {"ray_address": "http://127.0.0.1:8265", "flags": "", "entrypoint_num_gpus": 0}
REQUIRED_SETTINGS = ("input", "output")


@dataclass(frozen=True)
class RunSettings:
    """What one DAG run submits, resolved from the DAG run's params and the settings Variable."""

    ray_address: str
    input: str
    output: str
    flags: tuple[str, ...]  # further jobs/annotate.py flags: tasks, classes, model, batch size
    entrypoint_num_gpus: float
    replace_worse: bool


def resolve_settings(variable: object, params: dict) -> RunSettings:
    """The run's settings: each from the run's params when given (not None: a per-run override), else
    from the settings Variable (`variable`, its JSON value, None when unset), else SETTINGS_DEFAULTS.
    `replace_worse` is a per-run param only, so a standing setting never turns the guard off.

    Raises ValueError naming what is wrong: a Variable that is not a JSON object or has unknown keys (a
    typo would otherwise be ignored), or no `input`/`output` anywhere.
    """
    if variable is None:
        variable = {}
    if not isinstance(variable, dict):
        raise ValueError(f"the Airflow Variable {SETTINGS_VARIABLE!r} must be a JSON object, not {variable!r}")
    known = set(SETTINGS_DEFAULTS) | set(REQUIRED_SETTINGS)
    unknown = sorted(set(variable) - known)
    if unknown:
        raise ValueError(f"the Airflow Variable {SETTINGS_VARIABLE!r} has unknown keys {unknown}; "
                         f"known: {sorted(known)}")
    values = {**SETTINGS_DEFAULTS, **variable,
              **{key: params[key] for key in known if params.get(key) is not None}}
    missing = [key for key in REQUIRED_SETTINGS if not values.get(key)]
    if missing:
        raise ValueError(f"no {' or '.join(missing)}: set them in the Airflow Variable {SETTINGS_VARIABLE!r} "
                         f"(a JSON object; or the environment variable AIRFLOW_VAR_{SETTINGS_VARIABLE.upper()}), "
                         "or as the run's params")
    flags = values["flags"]
    return RunSettings(
        ray_address=str(values["ray_address"]),
        input=str(values["input"]),
        output=str(values["output"]),
        flags=tuple(shlex.split(flags) if isinstance(flags, str) else map(str, flags)),
        entrypoint_num_gpus=float(values["entrypoint_num_gpus"]),
        replace_worse=bool(params.get("replace_worse")),
    )


def day_to_label(logical_date: datetime.datetime | None, data_interval_start: datetime.datetime | None,
                 run_after: datetime.datetime, day_starts_at: datetime.time) -> datetime.date:
    """The day a DAG run labels: its logical date's (a scheduled or backfilled run's is its interval's
    start; a run triggered or tested for a date D labels D, not the last day complete before D as
    Airflow's inferred interval would); else, for a run triggered without a date, the last day complete
    at `run_after`. Days start at `day_starts_at` UTC, the DAG's schedule."""
    if logical_date is not None:
        return logical_date.astimezone(datetime.timezone.utc).date()
    if data_interval_start is not None:
        return data_interval_start.astimezone(datetime.timezone.utc).date()
    utc = run_after.astimezone(datetime.timezone.utc)
    starts = datetime.timedelta(hours=day_starts_at.hour, minutes=day_starts_at.minute)
    return (utc - starts).date() - datetime.timedelta(days=1)


def day_window(day: datetime.date, day_starts_at: datetime.time) -> tuple[datetime.datetime, datetime.datetime]:
    """[since, until) of `day`: the files modified in it, for --since/--until."""
    since = datetime.datetime.combine(day, day_starts_at, tzinfo=datetime.timezone.utc)
    return since, since + datetime.timedelta(days=1)


def submission_id_for(dag_id: str, run_id: str, clear_number: int = 0) -> str:
    """The Ray submission id of one scheduled run: the same on every retry of its tasks, so a retry
    finds the job it already submitted; a new one after the run is cleared by hand, so a rerun runs.
    (`airflow dags test` and `dags trigger` make run ids of their own time: each is a new job too.)"""
    raw = f"{dag_id}__{run_id}" + (f"__clear{clear_number}" if clear_number else "")
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", raw)


def summary_uri_for(output: str, submission_id: str) -> str:
    """Where a scheduled run's summary goes: `_runs/` in the output dataset, which Parquet readers skip."""
    return f"{output.rstrip('/')}/_runs/{submission_id}.json"


def annotate_entrypoint(
    *,
    input: str,
    output: str,
    partition: str,
    since: datetime.datetime,
    until: datetime.datetime,
    run_id: str,
    summary_uri: str,
    flags: Sequence[str] = (),
    replace_worse: bool = False,
) -> str:
    """The `python jobs/annotate.py ...` command of one incremental run: files modified in
    [since, until) into `partition` of `output`, its summary at `summary_uri`; `flags` add the rest
    (tasks, classes, model). `python` is the one on the Ray head's PATH (the job's driver runs there)."""
    args = ["python", ANNOTATE_SCRIPT, "--input", input, "--output", output, "--partition", partition,
            "--since", since.isoformat(), "--until", until.isoformat(), "--run-id", run_id,
            "--summary-uri", summary_uri, *flags, *(["--replace-worse"] if replace_worse else [])]
    return shlex.join(args)


def annotate_args(entrypoint: str) -> list[str]:
    """The flags given to jobs/annotate.py in a shell command (a manifest's entrypoint, a DAG's)."""
    words = shlex.split(entrypoint)
    scripts = [i for i, word in enumerate(words) if word.endswith(ANNOTATE_SCRIPT)]
    if not scripts:
        raise ValueError(f"no {ANNOTATE_SCRIPT} in {entrypoint!r}")
    return words[scripts[0] + 1:]


def submit_once(client, submission_id: str, entrypoint: str, runtime_env: dict, **resources) -> bool:
    """Submit the job unless one with this id exists (Ray refuses a second job with the same id).
    True when it was submitted now, False when an earlier attempt had already submitted it."""
    if _exists(client, submission_id):
        return False
    try:
        client.submit_job(entrypoint=entrypoint, submission_id=submission_id, runtime_env=runtime_env, **resources)
    except RuntimeError:
        if _exists(client, submission_id):  # another attempt won the race
            return False
        raise
    return True


def _exists(client, submission_id: str) -> bool:
    try:
        client.get_job_info(submission_id)
    except RuntimeError:  # the client's answer to a 404, among others; submitting then tells which
        return False
    return True


def job_finished(client, submission_id: str) -> bool:
    return str(client.get_job_status(submission_id).value) in TERMINAL_STATUSES


def wait_for_job(client, submission_id: str, poll_s: float = 10.0, timeout_s: float | None = None) -> str:
    """Poll until the job ends; its final status (SUCCEEDED, FAILED or STOPPED)."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while not job_finished(client, submission_id):
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"Ray job {submission_id} still running after {timeout_s} s")
        time.sleep(poll_s)
    return str(client.get_job_status(submission_id).value)


def read_summary(uri: str) -> dict | None:
    """The JSON summary the job wrote to --summary-uri, or None when there is none."""
    filesystem, path = fsspec.core.url_to_fs(uri)
    if not filesystem.exists(path):
        return None
    with filesystem.open(path, "r") as handle:
        return json.load(handle)


def run_problems(job_status: str, summary: dict | None, run_id: str,
                 failing_statuses: Sequence[str] = FAILING_ROW_STATUSES) -> list[str]:
    """Why a scheduled run must count as failed; empty when it did its work."""
    if summary is None:
        return [f"the job ended {job_status} and wrote no summary"]
    problems = []
    if job_status != "SUCCEEDED":
        problems.append(f"the Ray job ended {job_status}")
    if summary.get("run_id") != run_id:
        problems.append(f"the summary is of run {summary.get('run_id')!r}, not {run_id!r}")
    if summary.get("kept_old_partition"):  # the job's guard: a clearly worse rerun did not replace the day
        problems.append(summary["error"])
    elif summary.get("status") != "succeeded":
        problems.append(f"the run {summary.get('status')}: {summary.get('error')}")
    for task, by_status in sorted(summary.get("rows_per_task_and_status", {}).items()):
        problems += [f"{task}: {by_status[status]} {status} rows" for status in failing_statuses
                     if by_status.get(status)]
    return problems
