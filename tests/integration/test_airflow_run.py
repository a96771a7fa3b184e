"""Airflow itself runs cluster/airflow/annotate_daily.py (`dag.test()`, in the separate Airflow environment)
against a real `ray start --head` with token auth, over local files, with the settings given the way a
deployment gives them: the AIRFLOW_VAR_ANNOTATE_DAILY environment variable and RAY_AUTH_TOKEN, no file edited.

One day is labelled, labelled again (replaced, same rows), run with a job that fails (`check` fails), and
rerun with wrong classes (every detect row invalid_output: the job's guard keeps the old partition and
`check` fails, saying so), and that rerun is then triggered with `replace_worse`, which swaps in its kept
rows without generating them again. Without an Airflow environment (.airflow-venv/, built by .ci/run, or
AIRFLOW_PYTHON) the test is skipped.
"""

import datetime
import json
import os
import queue
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pyarrow.compute as pc
import pytest

from tests.conftest import SHAPES_MODEL
from tests.integration.conftest import read_output
from tests.rows import assert_each_once

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
AIRFLOW_PYTHON = Path(os.environ.get("AIRFLOW_PYTHON", REPO / ".airflow-venv" / "bin" / "python"))
SHAPES_IMAGES = REPO / "tests" / "data" / "shapes" / "images"
UTC = datetime.timezone.utc
DAY = "2026-11-21"
# The trained shapes checkpoint answers detect with boxes of these classes (ok rows); asked for other
# classes it answers with labels it was not asked for, so every detect row is invalid_output.
DONE_MARK = "@@ dag run reported: "  # the harness prints it + the report's path after each run
GOOD_FLAGS = f"--model {SHAPES_MODEL} --tasks detect,caption --classes circle,square,triangle --batch-size 8"
WRONG_CLASSES = f"--model {SHAPES_MODEL} --tasks detect,caption --classes car,person --batch-size 8"


@pytest.fixture(scope="module")
def airflow(tmp_path_factory, head):
    """Run DAG runs with Airflow's dag.test(), in one Airflow process (tests/airflow_dag_run.py): `run(logical_date,
    conf)` returns the run's report with the process's output during that run under "log"."""
    if not AIRFLOW_PYTHON.exists():
        pytest.skip(f"no Airflow environment at {AIRFLOW_PYTHON} (docs/scheduling.md: Tests)")
    # An environment built before ray[default] joined .ci/airflow-requirements.txt cannot submit: say so.
    has_ray = subprocess.run([str(AIRFLOW_PYTHON), "-c", "import importlib.metadata as m; m.version('ray'); "
                              "m.version('aiohttp')"], capture_output=True, check=False)
    assert has_ray.returncode == 0, (f"{AIRFLOW_PYTHON} lacks ray[default]: pip install -r "
                                     ".ci/airflow-requirements.txt into it")
    root = tmp_path_factory.mktemp("airflow-run")
    incoming, output = root / "incoming", root / "labels"
    incoming.mkdir()
    # Five images uploaded on DAY, one the next day: only the five are DAY's.
    for n, image in enumerate(sorted(SHAPES_IMAGES.iterdir())):
        uploaded = datetime.datetime(2026, 11, 21 if n < 5 else 22, 12, tzinfo=UTC).timestamp()
        shutil.copy(image, incoming / image.name)
        os.utime(incoming / image.name, (uploaded, uploaded))
    settings = {"ray_address": head.address, "input": str(incoming), "output": str(output), "flags": GOOD_FLAGS}
    env = {**os.environ, **head.env, "AIRFLOW_HOME": str(root / "home"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "cluster" / "airflow"),
           "AIRFLOW_VAR_ANNOTATE_DAILY": json.dumps(settings)}
    migrated = subprocess.run([str(AIRFLOW_PYTHON.parent / "airflow"), "db", "migrate"], env=env,
                              capture_output=True, text=True, timeout=240)
    assert migrated.returncode == 0, migrated.stderr[-3000:]

    harness = subprocess.Popen([str(AIRFLOW_PYTHON), str(REPO / "tests" / "airflow_dag_run.py"),
                                str(REPO / "cluster" / "airflow"), DONE_MARK], env=env, text=True,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines: queue.Queue = queue.Queue()

    def forward_output() -> None:  # read by a thread, so a run that never reports fails at its deadline
        for line in harness.stdout:
            lines.put(line)
        lines.put(None)  # the harness has exited

    threading.Thread(target=forward_output, daemon=True).start()

    def run(logical_date: str, conf: dict | None = None) -> dict:
        report = root / f"report-{time.monotonic_ns()}.json"
        started = time.monotonic()
        request = {"logical_date": logical_date, "conf": conf or {}, "report": str(report)}
        harness.stdin.write(json.dumps(request) + "\n")
        harness.stdin.flush()
        log = []
        while not (log and log[-1].strip() == f"{DONE_MARK}{report}"):
            try:
                line = lines.get(timeout=max(1.0, 400 - (time.monotonic() - started)))
            except queue.Empty:
                line = None
            if line is None:
                pytest.fail(f"no report from the DAG run (harness exit code {harness.poll()}, "
                            f"{time.monotonic() - started:.0f} s):\n" + "".join(log)[-6000:])
            log.append(line)
        return {**json.loads(report.read_text()), "log": "".join(log), "wall_s": round(time.monotonic() - started, 1)}

    yield run, output
    harness.stdin.close()
    try:
        harness.wait(timeout=60)
    except subprocess.TimeoutExpired:
        harness.kill()


def the_day(output: Path):
    table = read_output(str(output))
    return table.filter(pc.equal(table.column("run_date"), DAY))


def states(report: dict) -> dict:
    return {task: report["tasks"][task]["state"] for task in ("submit", "wait", "check")}


def statuses_by_task(rows) -> dict:
    """{task: {status: rows}}, as `check` reports it."""
    counts: dict = {}
    for task, status in zip(rows.column("task").to_pylist(), rows.column("status").to_pylist()):
        counts.setdefault(task, {}).setdefault(status, 0)
        counts[task][status] += 1
    return counts


def show(name: str, report: dict, output: Path) -> None:
    """What each run did, for the person reading the test's output (-s)."""
    rows = the_day(output)
    statuses = {count["values"]: count["counts"] for count in pc.value_counts(rows.column("status")).to_pylist()}
    failure = next((line.strip() for line in report["log"].splitlines() if "AirflowFailException: Ray job" in line),
                   None)
    print(f"\n{name}: run {report['state']} in {report['wall_s']} s, tasks {states(report)}, "
          f"check returned {report['tasks']['check']['return_value']}; partition run_date={DAY} holds "
          f"{rows.num_rows} rows {statuses} of run "
          f"{set(rows.column('run_id').to_pylist())}" + (f"\n  check failed: {failure}" if failure else ""))


def test_the_dag_labels_the_day_replaces_it_and_never_with_a_failed_or_worse_run_unless_told(airflow):
    run, output = airflow

    first = run(DAY)
    show("first run", first, output)
    assert first["state"] == "success" and set(states(first).values()) == {"success"}
    checked = first["tasks"]["check"]["return_value"]
    assert (checked["partition"], checked["images"], checked["rows"]) == (f"run_date={DAY}", 5, 10)
    # Every caption is right; detect is ok on at least four of the five (a checkpoint may get one scene wrong:
    # an earlier one skipped a coordinate in the first): the later runs are checked against what this one wrote.
    good = checked["rows_per_task_and_status"]
    good_detect_ok = good["detect"].get("ok", 0)
    assert good["caption"] == {"ok": 5} and sum(good["detect"].values()) == 5 and good_detect_ok >= 4
    first_id = first["tasks"]["submit"]["return_value"]["submission_id"]
    assert set(the_day(output).column("run_id").to_pylist()) == {first_id} and statuses_by_task(the_day(output)) == good

    again = run(DAY)  # `airflow dags test` of the same day again: a new job, which replaces the day
    show("second run", again, output)
    assert again["state"] == "success" and set(states(again).values()) == {"success"}
    second_id = again["tasks"]["submit"]["return_value"]["submission_id"]
    assert second_id != first_id
    rows = the_day(output)
    assert set(rows.column("run_id").to_pylist()) == {second_id}
    assert_each_once(rows, 10)

    failing = run(DAY, {"flags": "--model /nonexistent/model --tasks caption"})  # the job refuses: exit 2
    show("failing job", failing, output)
    assert failing["state"] == "failed"
    assert states(failing) == {"submit": "success", "wait": "success", "check": "failed"}
    assert "the Ray job ended FAILED" in failing["log"]
    assert set(the_day(output).column("run_id").to_pylist()) == {second_id}

    wrong = run(DAY, {"flags": WRONG_CLASSES})
    show("wrong classes", wrong, output)
    assert wrong["state"] == "failed"
    assert states(wrong) == {"submit": "success", "wait": "success", "check": "failed"}
    assert f"kept the old partition run_date={DAY}: the new rows are worse (detect: 0 ok rows (5 invalid_output) " \
           f"where the old partition has {good_detect_ok}" in wrong["log"]
    assert f"airflow dags trigger annotate_daily --logical-date {DAY}T" in wrong["log"]
    assert "--conf '{\"replace_worse\": true}'" in wrong["log"]
    rows = the_day(output)
    assert set(rows.column("run_id").to_pylist()) == {second_id}
    assert statuses_by_task(rows) == good
    assert_each_once(rows, 10)
    assert (output / "_staging" / f"run_date={DAY}").is_dir()  # kept, to inspect or to swap in on request

    forced = run(DAY, {"flags": WRONG_CLASSES, "replace_worse": True})
    show("wrong classes, replace_worse", forced, output)
    assert forced["state"] == "success" and set(states(forced).values()) == {"success"}
    assert forced["tasks"]["check"]["return_value"]["rows_per_task_and_status"] == {
        "detect": {"invalid_output": 5}, "caption": {"ok": 5}}
    forced_id = forced["tasks"]["submit"]["return_value"]["submission_id"]
    summary = json.loads((output / "_runs" / f"{forced_id}.json").read_text())
    assert summary["rows_from_earlier_attempts"] == 10  # the kept staging, resumed: nothing generated again
    assert_each_once(the_day(output), 10)
    assert not (output / "_staging").exists()
