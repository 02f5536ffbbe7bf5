"""The ingest DAG end to end with ``dag.test()``: a seeded day goes landing -> validated + asset event."""

from __future__ import annotations

import datetime as dt

import pytest

from pipelines.core import catalog

pytestmark = pytest.mark.integration


def asset_events(uri: str) -> list[dict]:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = (
            session.query(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .filter(AssetModel.uri == uri)
            .all()
        )
        return [dict(e.extra or {}) for e in rows]


def test_ingest_dag_validates_a_seeded_day(airflow_db, dag_root, load_dag, task_states):
    from pipelines.core.config import load_project
    from pipelines_ops.demo_data import seed_demo

    data_root, project = dag_root, load_project("flights_delay")
    seed_demo(project, "2013-01-01", "2013-01-01", inject_faults=True)  # unknown airports + duplicate keys
    dag = load_dag("ingest.py", "ingest_flights")
    run = dag.test(logical_date=dt.datetime(2013, 1, 1, tzinfo=dt.UTC))
    assert str(run.state) == "success"
    assert task_states(run) == {"wait_for_landing": "success", "validate_partition": "success"}

    validated = data_root / catalog.validated_file("flights", "2013-01-01")
    assert validated.is_file()
    import pyarrow.parquet as pq

    quarantined = pq.read_metadata(data_root / catalog.quarantine_rows("flights", "2013-01-01")).num_rows
    assert pq.read_metadata(validated).num_rows + quarantined == 844
    assert quarantined == 8

    uri = dag.get_task("validate_partition").outlets[0].uri
    [event] = [e for e in asset_events(uri) if e.get("ds") == "2013-01-01"]
    assert event["dataset"] == "flights" and event["validated_rows"] == 836
    assert event["report"].endswith("/" + catalog.validation_report("flights", "2013-01-01"))
    assert event["report"].endswith("/reports/datasets/flights/ds=2013-01-01/validation.json")


def test_contract_halt_fails_without_retries(airflow_db, dag_root, load_dag, task_states):
    from pipelines.core.config import load_project
    from pipelines_ops.demo_data import seed_demo

    data_root, project = dag_root, load_project("flights_delay")
    seed_demo(project, "2013-01-03", "2013-01-03", inject_faults=True)  # a file missing a column
    dag = load_dag("ingest.py", "ingest_flights")
    run = dag.test(logical_date=dt.datetime(2013, 1, 3, tzinfo=dt.UTC))
    assert str(run.state) == "failed"
    assert task_states(run)["validate_partition"] == "failed"  # not up_for_retry: a halt is final
    assert not (data_root / catalog.validated_dir("flights", "2013-01-03")).exists()
    assert (data_root / catalog.validation_report("flights", "2013-01-03")).is_file()
