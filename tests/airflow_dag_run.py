"""Run with an Airflow 3 environment's python, its metadata database migrated (AIRFLOW_HOME): run DAG runs of
cluster/airflow/annotate_daily.py with Airflow's own `dag.test()`, one per request, in one process (Airflow's
import and the DAG's parse are paid once). tests/integration/test_airflow_run.py drives it.

Arguments: the DAG folder and a marker. Requests come on stdin, one JSON object per line: `logical_date`
(ISO 8601), `conf` (the run's conf) and `report` (a path). For each, the run's state and each task's state
and XCom value are written as JSON to `report`, then the marker + the report's path is printed on a line
of its own. Settings come
from the environment (AIRFLOW_VAR_ANNOTATE_DAILY, RAY_AUTH_TOKEN), as on a deployed worker.
"""

import datetime
import json
import sys
from pathlib import Path

from airflow.dag_processing.dagbag import DagBag
from airflow.models.xcom import XComModel
from airflow.utils.session import create_session

folder, done_mark = sys.argv[1], sys.argv[2]
bag = DagBag(dag_folder=folder)
if bag.import_errors:
    sys.exit(f"import errors: {bag.import_errors}")
dag = bag.dags["annotate_daily"]
# The one change for the test's sake: the sensor polls every second (dag.test's own loop ticks each
# second), not every 60 s, so a 20 s job is not waited on for a minute.
dag.get_task("wait").poke_interval = 1


def run_and_report(logical_date: str, conf: dict, report: Path) -> None:
    logical = datetime.datetime.fromisoformat(logical_date)
    run = dag.test(logical_date=logical if logical.tzinfo else logical.replace(tzinfo=datetime.timezone.utc),
                   run_conf=conf)
    tasks = {}
    with create_session() as session:
        for ti in run.get_task_instances(session=session):
            value = session.scalars(XComModel.get_many(run_id=run.run_id, dag_ids=dag.dag_id, task_ids=ti.task_id,
                                                       key="return_value")).first()
            tasks[ti.task_id] = {"state": str(ti.state), "try_number": ti.try_number,
                                 "return_value": XComModel.deserialize_value(value) if value is not None else None}
    report.write_text(json.dumps({"run_id": run.run_id, "state": str(run.state), "conf": run.conf, "tasks": tasks},
                                 default=str))


for line in sys.stdin:
    request = json.loads(line)
    run_and_report(request["logical_date"], request["conf"], Path(request["report"]))
    sys.stderr.flush()
    print(done_mark + request["report"], flush=True)
