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
    # A day this small maps no shard task: validate_partition reads it alone.
    assert task_states(run) == {
        "wait_for_landing": "success",
        "validate_shard": "skipped",
        "validate_partition": "success",
    }

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


@pytest.fixture
def large_day_configs(tmp_path, monkeypatch):
    """This checkout's configs, with the flights dataset split into shards of 150 kB and a contract for large days."""
    from pipelines_ops.scale_data import large_day_configs

    env = large_day_configs(str(tmp_path), shard_bytes=150_000, max_shards=3, batch_rows=2_000, max_rows=1_000_000)
    for key, value in env.items():
        monkeypatch.setenv(key, value)


def test_a_large_day_is_read_by_mapped_shard_tasks_and_decided_once(
    airflow_db, dag_root, large_day_configs, load_dag, task_states
):
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    from pipelines.core.storage import get_storage
    from pipelines_ops.scale_data import land_large_day

    storage = get_storage()
    landed = land_large_day(storage, "2013-06-20", 12_000, files_per_origin=2)
    dag = load_dag("ingest.py", "ingest_flights")
    run = dag.test(logical_date=dt.datetime(2013, 6, 20, tzinfo=dt.UTC))
    assert str(run.state) == "success"
    with create_session() as session:
        shards = session.query(TaskInstance).filter_by(run_id=run.run_id, task_id="validate_shard").all()
        assert sorted(ti.map_index for ti in shards) == [0, 1, 2]
        assert {str(ti.state) for ti in shards} == {"success"}
        assert sorted(ti.rendered_map_index for ti in shards) == [f"2013-06-20 shard {i} of 3" for i in (1, 2, 3)]
    assert task_states(run)["validate_partition"] == "success"
    report = storage.read_json(catalog.validation_report("flights", "2013-06-20"))
    assert report["summary"]["shards"] == {"count": 3, "by_shard_tasks": 3}
    assert report["summary"]["validated_rows"] == sum(landed.values()) == 12_000
    assert not storage.list(catalog.validation_shards("flights", "2013-06-20"))
