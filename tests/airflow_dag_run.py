"""Run with an Airflow 3 environment's python, its metadata database migrated (AIRFLOW_HOME): run one DAG run
of cluster/airflow/annotate_daily.py with Airflow's own `dag.test()`, and write, as JSON into the file named
last, the run's state and each task's state and XCom value. tests/integration/test_airflow_run.py reads it.

Arguments: the DAG folder, the logical date (ISO 8601), the run's conf (JSON), the report's path. Settings
come from the environment (AIRFLOW_VAR_ANNOTATE_DAILY, RAY_AUTH_TOKEN), as on a deployed worker.
"""

import datetime
import json
import sys
from pathlib import Path

from airflow.dag_processing.dagbag import DagBag
from airflow.models.xcom import XComModel
from airflow.utils.session import create_session

folder, logical_date, conf, report = Path(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3]), Path(sys.argv[4])
bag = DagBag(dag_folder=str(folder))
if bag.import_errors:
    sys.exit(f"import errors: {bag.import_errors}")
dag = bag.dags["annotate_daily"]
# The one change for the test's sake: the sensor polls every 2 s, not every 60 s (dag.test waits out each
# reschedule), so a 20 s job is not waited on for a minute.
dag.get_task("wait").poke_interval = 2

logical = datetime.datetime.fromisoformat(logical_date)
run = dag.test(logical_date=logical if logical.tzinfo else logical.replace(tzinfo=datetime.timezone.utc), run_conf=conf)

tasks = {}
with create_session() as session:
    for ti in run.get_task_instances(session=session):
        value = session.scalars(XComModel.get_many(run_id=run.run_id, dag_ids=dag.dag_id, task_ids=ti.task_id,
                                                   key="return_value")).first()
        tasks[ti.task_id] = {"state": str(ti.state), "try_number": ti.try_number,
                             "return_value": XComModel.deserialize_value(value) if value is not None else None}
report.write_text(json.dumps({"run_id": run.run_id, "state": str(run.state), "conf": run.conf, "tasks": tasks},
                             default=str))
