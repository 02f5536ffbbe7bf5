"""The retrain DAG with ``dag.test()``: train, gate, promote, announce; a re-run changes nothing."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration


def test_retrain_dag_promotes_then_rerun_is_a_noop(airflow_db, dag_jan_root, load_dag, task_states):
    from pipelines.core.tracking import CHAMPION, client

    dag = load_dag("retrain.py", "retrain_flights_delay")
    run = dag.test(run_conf={"end_ds": "2013-01-31"})
    assert str(run.state) == "success"
    assert task_states(run) == {"train_challenger": "success", "gate": "success", "announce_champion": "success"}
    c = client()
    champion = c.get_model_version_by_alias("flights_delay", CHAMPION)
    assert str(champion.version) == "1"
    assert c.get_run(champion.run_id).data.tags["trigger"] == "manual"

    again = dag.test(run_conf={"end_ds": "2013-01-31"})  # same data and code: version reused, gate no-op
    assert str(again.state) == "success"
    assert task_states(again)["announce_champion"] == "skipped"
    assert len(c.search_model_versions("name='flights_delay'")) == 1
