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

import fsspec

ANNOTATE_SCRIPT = "jobs/annotate.py"
TERMINAL_STATUSES = ("SUCCEEDED", "FAILED", "STOPPED")
# Rows with these statuses mean the run did not do its work (generate raised); image_error (bad input
# files) and invalid_output (answers that do not parse) are the data's and the model's, and are kept.
FAILING_ROW_STATUSES = ("model_error",)


def submission_id_for(dag_id: str, run_id: str, clear_number: int = 0) -> str:
    """The Ray submission id of one scheduled run: the same on every retry of its tasks, so a retry
    finds the job it already submitted; a new one after the run is cleared by hand, so a rerun runs."""
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
) -> str:
    """The `python jobs/annotate.py ...` command of one incremental run: files modified in
    [since, until) into `partition` of `output`, its summary at `summary_uri`; `flags` add the rest
    (tasks, classes, model)."""
    args = ["python", ANNOTATE_SCRIPT, "--input", input, "--output", output, "--partition", partition,
            "--since", since.isoformat(), "--until", until.isoformat(), "--run-id", run_id,
            "--summary-uri", summary_uri, *flags]
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
    if summary.get("status") != "succeeded":
        problems.append(f"the run {summary.get('status')}: {summary.get('error')}")
    for task, by_status in sorted(summary.get("rows_per_task_and_status", {}).items()):
        problems += [f"{task}: {by_status[status]} {status} rows" for status in failing_statuses
                     if by_status.get(status)]
    return problems
