"""Processes killed mid-run, on a real `ray start --head`: the model actor (Ray restarts it and retries its
batches) and the driver (rerunning the same command resumes the run). Either way every image x task ends
as exactly one row, and work written before the kill is not done again."""

import datetime
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.run import run_job
from pipelines.storage.output import IncompleteOutputError, committed_dataset
from tests.images import encode, solid
from tests.integration.conftest import read_output
from tests.jobs import wait_until, written_files
from tests.rows import assert_each_once

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
IMAGES = 40
TASKS = "detect,caption"
# The tiny random model never ends an answer: capped, a detect answer takes 64 tokens instead of its
# 376-token budget, which would be most of the run's time and nothing to do with the kill.
BUDGET = "detect=64"


def write_images(root: Path) -> None:
    root.mkdir(parents=True)
    for i in range(IMAGES):
        (root / f"{i:03d}.png").write_bytes(encode(solid(20 + i, 30, (i * 6, 100, 200 - i * 4)), "PNG"))


def command(tmp_path: Path, head, model: str) -> list[str]:
    # Blocks of 2 images are written as they are done, so there is a moment with some rows written and
    # most not; --address makes this process the job's driver on the head.
    return [sys.executable, str(REPO / "jobs" / "annotate.py"), "--input", str(tmp_path / "in"),
            "--output", str(tmp_path / "out"), "--model", model, "--tasks", TASKS, "--classes", "car",
            "--batch-size", "2", "--images-per-block", "2", "--max-new-tokens", BUDGET,
            "--address", head.gcs_address]


def start(cmd: list[str], head, log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen(cmd, env={**os.environ, **head.env}, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=REPO)


def model_actor_pids(head) -> list[int]:
    """This head's model actors: Ray names an actor's process after its class, and workers started
    by the head carry its auth token in their environment."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes()
            if cmdline.startswith(b"ray::") and b"GenerateStage" in cmdline \
                    and head.env["RAY_AUTH_TOKEN"].encode() in (proc / "environ").read_bytes():
                pids.append(int(proc.name))
        except (OSError, ValueError):
            continue
    return pids


def check_exactly_once(output: Path) -> list[dict]:
    rows = read_output(str(output)).to_pylist()
    assert_each_once(rows, IMAGES * 2)
    return rows


def test_a_killed_model_actor_is_restarted_and_no_row_is_lost_or_doubled(tmp_path, head, tiny_model_dir):
    write_images(tmp_path / "in")
    log = tmp_path / "job.log"
    proc = start(command(tmp_path, head, tiny_model_dir), head, log)
    try:
        # mid-run: the actor is up and has answered some batches already
        pids = wait_until(lambda: written_files(tmp_path / "out") and model_actor_pids(head), proc, log)
        os.kill(pids[0], signal.SIGKILL)
        assert proc.wait(timeout=300) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert pids[0] not in model_actor_pids(head)
    rows = check_exactly_once(tmp_path / "out")
    print(f"actor {pids[0]} killed: {len(rows)} rows of {IMAGES * 2}, 0 lost, 0 duplicated")
    summary = json.loads((tmp_path / "out" / "_summary.json").read_text())
    assert summary["rows"] == IMAGES * 2 and not summary["resumed"]


def test_a_rerun_after_the_driver_is_killed_finishes_the_work_without_redoing_it(tmp_path, head, tiny_model_dir):
    write_images(tmp_path / "in")
    cmd = command(tmp_path, head, tiny_model_dir)
    log = tmp_path / "first.log"
    proc = start(cmd, head, log)
    try:
        wait_until(lambda: written_files(tmp_path / "out"), proc, log)  # the first block is written
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver, with no chance to clean up
        proc.wait()
    killed_at = datetime.datetime.now(datetime.timezone.utc)
    assert not (tmp_path / "out" / "_summary.json").exists()
    with pytest.raises(IncompleteOutputError, match="has not finished"):  # readers refuse a half-written run
        committed_dataset(str(tmp_path / "out"))

    rerun_started = datetime.datetime.now(datetime.timezone.utc)
    rerun = subprocess.run(cmd, env={**os.environ, **head.env}, capture_output=True, text=True, cwd=REPO,
                           timeout=300)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    summary = json.loads((tmp_path / "out" / "_summary.json").read_text())
    rows = check_exactly_once(tmp_path / "out")
    earlier = summary["rows_from_earlier_attempts"]
    assert summary["resumed"] and 0 < earlier < IMAGES * 2
    # Nothing written before the kill was generated again: exactly `earlier` rows predate the kill,
    # the rerun wrote only the rest, and one run id covers both attempts.
    assert sum(row["created_at"] < killed_at for row in rows) == earlier
    assert sum(row["created_at"] > rerun_started for row in rows) == IMAGES * 2 - earlier
    assert len({row["run_id"] for row in rows}) == 1
    print(f"driver killed: {earlier} rows kept from the first attempt, {summary['unreadable_files_removed']} "
          f"half-written files removed, {len(rows) - earlier} rows written by the rerun, {len(rows)} of {IMAGES * 2}")

    # The same arguments once more: the run is complete, so nothing runs and nothing changes.
    again = run_job({"input": str(tmp_path / "in"), "output": str(tmp_path / "out"), "model": tiny_model_dir,
                     "tasks": TASKS, "classes": "car", "max_new_tokens": BUDGET})
    assert again["exit_code"] == 0 and again["already_complete"] and again["rows"] == IMAGES * 2
    assert read_output(str(tmp_path / "out")).num_rows == IMAGES * 2
