"""`ray job submit -- python jobs/annotate.py ...` against a real `ray start --head` with token auth, and the
Airflow DAG's submission path (pipelines/driver/schedule.py) against the same head."""

import datetime
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from pipelines.driver.schedule import (
    annotate_entrypoint,
    read_summary,
    run_problems,
    submit_once,
    summary_uri_for,
    wait_for_job,
)
from tests.integration.conftest import read_output, short_budgets
from tests.integration.ray_head import RAY_EXE
from tests.rows import assert_each_once

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "tests" / "data" / "samples"


def test_submitted_job_annotates_the_samples(tmp_path, head, tiny_model_dir):
    output = tmp_path / "out"  # absolute: the job runs in Ray's copy of the working dir
    result = subprocess.run(
        [str(RAY_EXE), "job", "submit", "--address", head.address, "--working-dir", str(REPO),
         "--runtime-env", str(REPO / "cluster" / "runtime_env.yaml"), "--",
         "python", "jobs/annotate.py", "--input", str(SAMPLES), "--output", str(output),
         "--model", tiny_model_dir, "--tasks", "detect,caption", "--classes", "car,person",
         "--max-new-tokens", short_budgets("detect,caption")],
        env={**os.environ, **head.env}, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "annotated 5 images into 10 rows" in result.stdout
    table = read_output(str(output))
    assert_each_once(table, 10)


def test_a_scheduled_submission_runs_once_and_reports_its_summary(tmp_path, head, tiny_model_dir):
    from ray.job_submission import JobSubmissionClient

    # Ray reads RAY_AUTH_MODE when it is imported, long before this test: give the token as a header.
    client = JobSubmissionClient(head.address, headers={"Authorization": f"Bearer {head.env['RAY_AUTH_TOKEN']}"})
    output, sid = str(tmp_path / "labels"), "annotate_daily__scheduled__2026-11-21"
    now = datetime.datetime.now(datetime.timezone.utc)
    entrypoint = annotate_entrypoint(
        input=str(SAMPLES), output=output, partition="run_date=2026-11-21", since=now - datetime.timedelta(days=3650),
        until=now + datetime.timedelta(days=1), run_id=sid, summary_uri=summary_uri_for(output, sid),
        flags=["--model", tiny_model_dir, "--tasks", "caption", "--max-new-tokens", short_budgets("caption")])
    runtime_env = {**yaml.safe_load((REPO / "cluster" / "runtime_env.yaml").read_text()), "working_dir": str(REPO)}

    assert submit_once(client, sid, entrypoint, runtime_env) is True
    assert submit_once(client, sid, entrypoint, runtime_env) is False  # a retried task does not submit again
    assert wait_for_job(client, sid, poll_s=2, timeout_s=300) == "SUCCEEDED", client.get_job_logs(sid)[-3000:]
    summary = read_summary(summary_uri_for(output, sid))
    assert run_problems("SUCCEEDED", summary, sid) == []
    assert (summary["rows"], summary["partition"]) == (5, "run_date=2026-11-21")
    assert len([job for job in client.list_jobs() if job.submission_id == sid]) == 1
    assert read_output(output).column("run_date").to_pylist() == ["2026-11-21"] * 5
