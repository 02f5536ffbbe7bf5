"""The retrain DAG with ``dag.test()``: train, gate, promote, announce; a re-run changes nothing."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

from pipelines.settings import PROJECT_ROOT

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def airflow_db():
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        check=True,
        capture_output=True,
        timeout=300,
        env=os.environ.copy(),
    )


def load_dag():
    spec = importlib.util.spec_from_file_location("retrain_dag_under_test", PROJECT_ROOT / "dags" / "retrain.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.retrain_flights_delay


def states(run) -> dict[str, str]:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        return {
            ti.task_id: str(ti.state)
            for ti in session.query(TaskInstance).filter_by(dag_id=run.dag_id, run_id=run.run_id)
        }


def test_retrain_dag_promotes_then_rerun_is_a_noop(airflow_db, jan_root):
    from pipelines.tracking import CHAMPION, client

    dag = load_dag()
    run = dag.test(run_conf={"end_ds": "2013-01-31"})
    assert str(run.state) == "success"
    assert states(run) == {"train_challenger": "success", "gate": "success", "announce_champion": "success"}
    c = client()
    champion = c.get_model_version_by_alias("flights_delay", CHAMPION)
    assert str(champion.version) == "1"
    assert c.get_run(champion.run_id).data.tags["trigger"] == "manual"

    again = dag.test(run_conf={"end_ds": "2013-01-31"})  # same data and code: version reused, gate no-op
    assert str(again.state) == "success"
    assert states(again)["announce_champion"] == "skipped"
    assert len(c.search_model_versions("name='flights_delay'")) == 1
