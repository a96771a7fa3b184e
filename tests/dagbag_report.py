"""Run with an Airflow 3 environment's python: load cluster/airflow/ with Airflow's own DagBag and write, as
JSON into the file named second, its import errors and each DAG's params, and tasks with their downstream
tasks. tests/integration/test_airflow_dag.py reads it, so the main test environment needs no Airflow."""

import json
import sys
from pathlib import Path

from airflow.dag_processing.dagbag import DagBag

folder, report = Path(sys.argv[1]), Path(sys.argv[2])
bag = DagBag(dag_folder=str(folder))
report.write_text(json.dumps({
    "import_errors": {str(k): str(v) for k, v in bag.import_errors.items()},
    "dags": {
        dag_id: {
            "fileloc": dag.fileloc,
            "timetable": type(dag.timetable).__name__,
            "catchup": dag.catchup,
            "max_active_runs": dag.max_active_runs,
            "params": {name: dag.params[name] for name in dag.params},
            "tasks": {t.task_id: {"downstream": sorted(t.downstream_task_ids), "retries": t.retries,
                                  "type": type(t).__name__} for t in dag.tasks},
        }
        for dag_id, dag in bag.dags.items()
    },
}))
