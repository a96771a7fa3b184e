"""cluster/airflow/annotate_daily.py loads in Airflow 3's own DagBag, with its tasks in order.

Airflow lives in its own environment (as on real Airflow workers): `.airflow-venv/`, built by .ci/run
(or set AIRFLOW_PYTHON to another Airflow 3 python). Without one this test is skipped; see README
"Scheduling with Airflow" for the command that builds it.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
AIRFLOW_PYTHON = Path(os.environ.get("AIRFLOW_PYTHON", REPO / ".airflow-venv" / "bin" / "python"))


@pytest.fixture(scope="module")
def dagbag(tmp_path_factory):
    if not AIRFLOW_PYTHON.exists():
        pytest.skip(f"no Airflow environment at {AIRFLOW_PYTHON} (README: Scheduling with Airflow)")
    home = tmp_path_factory.mktemp("airflow-home")
    report = home / "dagbag.json"
    env = {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    result = subprocess.run([str(AIRFLOW_PYTHON), str(REPO / "tests" / "dagbag_report.py"),
                             str(REPO / "cluster" / "airflow"), str(report)],
                            env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(report.read_text())


def test_the_dag_loads_without_errors(dagbag):
    assert dagbag["import_errors"] == {}
    assert list(dagbag["dags"]) == ["annotate_daily"]


def test_tasks_and_their_order(dagbag):
    dag = dagbag["dags"]["annotate_daily"]
    tasks = dag["tasks"]
    assert set(tasks) == {"submit", "wait", "check"}
    assert set(tasks["submit"]["downstream"]) == {"wait", "check"}  # check also reads submit's id
    assert tasks["wait"]["downstream"] == ["check"] and tasks["check"]["downstream"] == []
    assert tasks["wait"]["type"] == "DecoratedSensorOperator"
    # one-day data intervals, so --since/--until cover each day exactly once
    assert dag["timetable"] == "CronDataIntervalTimetable" and dag["max_active_runs"] == 1


def test_the_main_environment_needs_no_airflow():
    assert "airflow" not in sys.modules


def test_settings_are_not_in_the_dag_file(dagbag):
    # Deployments give them in the annotate_daily Variable; a param set on a run overrides it for that run.
    params = dagbag["dags"]["annotate_daily"]["params"]
    assert params == {"ray_address": None, "input": None, "output": None, "flags": None,
                      "entrypoint_num_gpus": None, "replace_worse": False}
