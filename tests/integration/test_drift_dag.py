"""Drift DAG -> drift asset -> retrain DAG, with ``dag.test()`` and the real metadata DB.

The drift DAG runs for a summer day against a champion trained on January,
fires, and emits the drift asset; Airflow queues the retrain DAG for it. The
one step ``dag.test()`` cannot take is the scheduler's turning that queue
into an asset-triggered run: the test attaches the recorded asset events to
the retrain run it starts, as the scheduler does (``consumed_asset_events``),
and the task reads them through Airflow's own ``triggering_asset_events``.
(``make demo`` takes the same path through the real scheduler.)
"""

from __future__ import annotations

import json

import pytest

from pipelines.core import catalog

pytestmark = pytest.mark.integration


def _asset_events(name: str, session):
    from airflow.models.asset import AssetEvent, AssetModel

    return (
        session.query(AssetEvent)
        .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
        .filter(AssetModel.name == name)
        .order_by(AssetEvent.id)
        .all()
    )


def test_drift_fires_retrain_records_evidence_and_cooldown_holds(airflow_db, dag_seasons_root, load_dag, task_states):
    from airflow.models.asset import AssetDagRunQueue
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session

    from pipelines.core.config import load_project
    from pipelines.core.storage import get_storage
    from pipelines.core.tracking import client
    from pipelines.monitoring.drift import _last_retraining
    from pipelines.training.gate import run_gate
    from pipelines.training.train import train_challenger

    project = load_project("flights_delay")
    train_challenger(project, "2013-01-31")
    assert run_gate(project)["promoted"]

    with create_session() as session:  # registered by an earlier test while paused: unpause it
        session.query(DagModel).filter_by(dag_id="retrain_flights_delay").update({"is_paused": False})
    drift_dag = load_dag("drift.py", "drift_flights_delay")
    run = drift_dag.test(run_conf={"ds": "2013-07-01"})
    assert str(run.state) == "success"
    assert task_states(run) == {"check_drift": "success", "emit_drift": "success"}
    with create_session() as session:
        [event] = _asset_events("drift_flights_delay", session)
        extra = dict(event.extra)
        queued = session.query(AssetDagRunQueue).filter_by(target_dag_id="retrain_flights_delay").count()
    assert extra["model"] == "flights_delay" and extra["ds"] == "2013-07-01" and extra["model_version"] == "1"
    assert "dest" in extra["drifted_features"] and extra["drift_share"] >= 0.1
    assert extra["report"] == get_storage().uri(catalog.drift_summary("flights_delay", "2013-07-01"))
    assert queued == 1  # Airflow queued the retrain DAG on the drift asset

    # The scheduler's step: an asset-triggered run consumes the queued events.
    import airflow.models.dagrun as dagrun_module

    create = dagrun_module.get_or_create_dagrun

    def consuming_the_drift_events(*, dag, session, **kwargs):
        dr = create(dag=dag, session=session, **kwargs)
        dr.consumed_asset_events.extend(_asset_events("drift_flights_delay", session))
        session.commit()
        return dr

    retrain_dag = load_dag("retrain.py", "retrain_flights_delay")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(dagrun_module, "get_or_create_dagrun", consuming_the_drift_events)
        retrained = retrain_dag.test()
    assert str(retrained.state) == "success"
    states = task_states(retrained)
    assert states["train_challenger"] == "success" and states["gate"] == "success"

    c = client()
    [challenger] = [v for v in c.search_model_versions("name='flights_delay'") if str(v.version) == "2"]
    tags = c.get_run(challenger.run_id).data.tags
    assert tags["trigger"] == "drift" and tags["end_ds"] == "2013-07-01"
    evidence = json.loads(tags["trigger_evidence"])
    assert evidence["events"][0]["report"] == extra["report"]
    assert evidence["events"][0]["drifted_features"] == extra["drifted_features"]
    # Promoted or not, the challenger's window starts a cooldown: no re-trigger on the next partition.
    assert _last_retraining(project, "2013-07-02") == "2013-07-01"

    # The summer challenger won the gate and, as a drift challenger of a project that says so
    # (shadow.drift_challenger: shadow), starts in shadow: the alias stays until the live gate decides.
    assert states["announce_champion"] == "skipped"
    assert str(c.get_model_version_by_alias("flights_delay", "champion").version) == "1"
    assert c.get_model_version("flights_delay", "2").tags["gate_decision"] == "shadow"
    from pipelines.core import shadows

    assert [s.version for s in shadows.active(project)] == ["2"]
    # Promoted as the live gate promotes (tests/model/test_shadow.py judges it on live days): the next
    # partition is checked against it, and is quiet.
    from pipelines.training.gate import _move_aliases

    _move_aliases(c, project, "2", "1", "test: promoted as the live gate would")
    assert shadows.active(project) == [] and c.get_model_version("flights_delay", "2").tags["shadow"] == "promoted"
    again = drift_dag.test(run_conf={"ds": "2013-07-02"})
    assert task_states(again) == {"check_drift": "success", "emit_drift": "skipped"}
    summary = get_storage().read_json(catalog.drift_summary("flights_delay", "2013-07-02"))
    assert summary["model_version"] == "2" and summary["signal"] is False, summary["reasons"]

    # Had the gate kept the January champion (roll back to it), the next partition still
    # signals against it, and the cooldown is what stops a second trigger.
    from pipelines.training.gate import rollback

    rollback(project, "test: as if the drift-triggered challenger had been rejected")
    third = drift_dag.test(run_conf={"ds": "2013-07-03"})
    assert task_states(third) == {"check_drift": "success", "emit_drift": "skipped"}
    summary = get_storage().read_json(catalog.drift_summary("flights_delay", "2013-07-03"))
    assert summary["model_version"] == "1" and summary["signal"] is True
    assert summary["policy_fired"] is False and summary["reason"].startswith("cooldown: last"), summary["reason"]
    with create_session() as session:
        assert len(_asset_events("drift_flights_delay", session)) == 1
