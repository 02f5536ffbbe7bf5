"""The batch_score DAG with ``dag.test()``: wait, plan, mapped chunks, publish; both model choices; a halted day.

Scoring logic is tested process by process in ``test_scoring.py``; here the
wiring: the plan's chunks become mapped task instances, each commits its own
chunk, publish assembles them, the DAG params reach the manifest, and the
model choice picks the right version.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest

from pipelines.core import catalog

pytestmark = pytest.mark.integration

DS = "2013-01-28"
MODEL = "flights_delay"
ROWS = 923  # validated rows of 2013-01-28


# Without a shadow version the shadow branch is skipped: no task process after shadow_versions.
NO_SHADOWS = [("score_shadow", -1, "skipped"), ("shadow_versions", -1, "skipped")]


def _instances(run) -> list[tuple[str, int, str]]:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = session.query(TaskInstance).filter_by(dag_id=run.dag_id, run_id=run.run_id).all()
        return sorted((ti.task_id, ti.map_index, str(ti.state)) for ti in tis)


def _published(root, ds: str) -> tuple:
    import duckdb

    return duckdb.execute(
        "select count(*), count(distinct row_id), count(distinct model_version), any_value(model_version) "
        "from read_parquet(?, hive_partitioning = true) where ds = ?",
        [str(root / catalog.parquet_glob(catalog.scores_table(MODEL))), ds],
    ).fetchone()


def _train_and_gate(end_ds: str) -> dict:
    from pipelines.core.config import load_project
    from pipelines.training.gate import run_gate
    from pipelines.training.train import train_challenger

    project = load_project("flights_delay")
    version = train_challenger(project, end_ds)["version"]
    return {**run_gate(project, candidate=version), "version": str(version)}


def test_batch_score_dag_maps_chunks_and_publishes_with_the_chosen_version(airflow_db, dag_jan_root, load_dag):
    from pipelines.core.tracking import CHAMPION, client

    first = _train_and_gate("2013-01-20")  # champion on 2013-01-28
    assert first["promoted"]
    second = _train_and_gate("2013-01-31")  # today's champion, promoted after the scored day
    assert second["promoted"], second.get("failed")
    assert str(client().get_model_version_by_alias("flights_delay", CHAMPION).version) == str(second["version"])

    dag = load_dag("batch_score.py", "batch_score_flights_delay")
    run = dag.test(logical_date=dt.datetime(2013, 1, 28, tzinfo=dt.UTC), run_conf={"chunk_rows": 300})
    assert str(run.state) == "success"
    assert _instances(run) == [
        ("plan", -1, "success"),
        ("publish", -1, "success"),
        *[("score_chunk", i, "success") for i in range(4)],  # 923 rows: 300, 300, 300, 23
        *NO_SHADOWS,
        ("wait_for_validated", -1, "success"),
    ]
    manifest_path = dag_jan_root / catalog.scores_manifest(MODEL, DS)
    folder = manifest_path.parent
    manifest = json.loads(manifest_path.read_text())
    assert manifest["model_version"] == second["version"] and manifest["model_choice"] == "current"
    assert manifest["rows"] == ROWS and manifest["chunks"] == 4
    assert _published(dag_jan_root, DS) == (ROWS, ROWS, 1, second["version"])
    ckpt = json.loads((dag_jan_root / catalog.scoring_plan(MODEL, DS)).read_text())
    assert ckpt["status"] == "published" and ckpt["plan_id"] == manifest["plan_id"]

    # A backfill that asks for the version that was champion on the day replaces the partition.
    conf = {"model_choice": "as_of_partition", "chunk_rows": 500}
    again = dag.test(logical_date=dt.datetime(2013, 1, 28, tzinfo=dt.UTC), run_conf=conf)
    assert str(again.state) == "success"
    manifest = json.loads(manifest_path.read_text())
    assert manifest["model_version"] == first["version"] and manifest["model_choice"] == "as_of_partition"
    assert manifest["chunks"] == 2
    assert _published(dag_jan_root, DS) == (ROWS, ROWS, 1, first["version"])
    assert sorted(str(p.relative_to(dag_jan_root)) for p in folder.iterdir()) == sorted(
        [catalog.scores_manifest(MODEL, DS), catalog.scores_file(MODEL, DS)]
    )

    # At the config's chunk_rows the day is one chunk: the plan task scores and publishes it, the mapped chunk
    # is skipped (no process), and publish finds the plan published and announces it.
    daily_conf = {"chunk_rows": None, "model_choice": "current"}
    daily = dag.test(logical_date=dt.datetime(2013, 1, 28, tzinfo=dt.UTC), run_conf=daily_conf)
    assert str(daily.state) == "success"
    assert _instances(daily) == [
        ("plan", -1, "success"),
        ("publish", -1, "success"),
        ("score_chunk", -1, "skipped"),
        *NO_SHADOWS,
        ("wait_for_validated", -1, "success"),
    ]
    manifest = json.loads(manifest_path.read_text())
    assert manifest["model_version"] == second["version"] and manifest["chunks"] == 1
    assert _published(dag_jan_root, DS) == (ROWS, ROWS, 1, second["version"])
    plan = json.loads((dag_jan_root / catalog.scoring_plan(MODEL, DS)).read_text())
    assert plan["run_key"] == f"{daily.run_id}#0" and plan["plan_id"] == manifest["plan_id"]
    events = _scores_events(daily)
    assert [(e["source_task_id"], e["extra"]["ds"], e["extra"]["rows"]) for e in events] == [("publish", DS, ROWS)]
    assert events[0]["extra"]["model_version"] == second["version"] and events[0]["extra"]["chunks"] == 1


def _scores_events(run) -> list[dict]:
    """The scores asset's events emitted by a run."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = (
            session.query(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .filter(AssetModel.name == f"scores_{MODEL}", AssetEvent.source_run_id == run.run_id)
            .all()
        )
        return [{"source_task_id": e.source_task_id, "extra": dict(e.extra or {})} for e in rows]


def test_no_version_as_of_the_day_fails_the_plan_without_retries(airflow_db, dag_jan_root, load_dag):
    assert _train_and_gate("2013-01-31")["promoted"]
    dag = load_dag("batch_score.py", "batch_score_flights_delay")
    run = dag.test(logical_date=dt.datetime(2013, 1, 10, tzinfo=dt.UTC), run_conf={"model_choice": "as_of_partition"})
    assert str(run.state) == "failed"
    states = {task: state for task, _, state in _instances(run)}
    assert states["plan"] == "failed" and states["publish"] == "upstream_failed"
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        ti = session.query(TaskInstance).filter_by(dag_id=run.dag_id, run_id=run.run_id, task_id="plan").one()
        assert ti.try_number == 1  # failed for good on the first try: no retries spent
    assert not (dag_jan_root / catalog.scores_file(MODEL, "2013-01-10")).parent.exists()
    assert not (dag_jan_root / catalog.scoring_plan(MODEL, "2013-01-10")).exists()


def test_a_halted_day_is_skipped_not_failed(airflow_db, dag_root, load_dag):
    from pipelines.core.config import load_project
    from pipelines.core.errors import ContractHalt
    from pipelines.ingest.validation import validate_partition
    from pipelines_ops.demo_data import seed_demo

    project = load_project("flights_delay")
    seed_demo(project, "2013-02-07", "2013-02-07", inject_faults=True)  # a column is missing: halted
    with pytest.raises(ContractHalt):
        validate_partition(project, "2013-02-07")
    dag = load_dag("batch_score.py", "batch_score_flights_delay")
    run = dag.test(logical_date=dt.datetime(2013, 2, 7, tzinfo=dt.UTC))
    assert str(run.state) == "success"
    assert {task: state for task, _, state in _instances(run)} == {
        "wait_for_validated": "skipped",
        "plan": "skipped",
        "score_chunk": "skipped",
        "publish": "skipped",
        **{task: "skipped" for task, _, _ in NO_SHADOWS},
    }


def test_shadows_are_scored_beside_the_champion_judged_by_the_live_gate_dag_and_a_failing_one_fails_only_its_task(
    airflow_db, dag_jan_root, load_dag, monkeypatch
):
    from pipelines.core import shadows
    from pipelines.core.config import load_project
    from pipelines.training.live import add_shadow
    from pipelines.training.train import train_challenger

    champion = _train_and_gate("2013-01-20")
    assert champion["promoted"]
    shadow = {"version": str(train_challenger(load_project(MODEL), "2013-01-24")["version"])}
    add_shadow(MODEL, shadow["version"], "a later window, watched before it is gated")
    first, second = shadow, champion  # the shadow's lane and the champion's (BI's)
    dag = load_dag("batch_score.py", "batch_score_flights_delay")
    run = dag.test(logical_date=dt.datetime(2013, 1, 28, tzinfo=dt.UTC))
    assert str(run.state) == "success"
    assert _instances(run) == [
        ("plan", -1, "success"),
        ("publish", -1, "success"),
        ("score_chunk", -1, "skipped"),
        ("score_shadow", 0, "success"),
        ("shadow_versions", -1, "success"),
        ("wait_for_validated", -1, "success"),
    ]
    assert _published(dag_jan_root, DS) == (ROWS, ROWS, 1, second["version"])
    lane = catalog.Lane(MODEL, first["version"])
    shadow_manifest = json.loads((dag_jan_root / catalog.scores_manifest(lane, DS)).read_text())
    assert shadow_manifest["lane"] == "shadow" and shadow_manifest["model_version"] == first["version"]
    assert shadow_manifest["rows"] == ROWS

    # The live gate DAG (triggered by both assets in production; here by its ds param) measures the day.
    gate = load_dag("live_gate.py", "live_gate_flights_delay")
    judged = gate.test(run_conf={"ds": DS})
    assert str(judged.state) == "success"
    assert _instances(judged) == [
        ("announce_live_champion", -1, "skipped"),
        ("judge_shadows", -1, "success"),
        ("wait_for_champion_lane", -1, "success"),
    ]
    live = json.loads((dag_jan_root / catalog.live_record(MODEL, DS)).read_text())
    assert live["bi_version"] == second["version"] and set(live["versions"]) == {first["version"], second["version"]}
    decision = json.loads((dag_jan_root / catalog.live_decision(MODEL, DS)).read_text())
    assert [(d["shadow"], d["verdict"], d["why"]) for d in decision["shadows"]] == [
        (first["version"], "wait", "too few paired days")
    ]

    # A shadow version that cannot be scored (deleted from the registry after it was listed): its task fails for
    # good; the champion's lane publishes and announces as ever; the run is failed, so the failure is seen.
    gone = shadows.Shadow("99", "run99", "config", "deleted meanwhile", "")
    monkeypatch.setattr(shadows, "active", lambda project, c=None: [gone])
    failing = dag.test(logical_date=dt.datetime(2013, 1, 27, tzinfo=dt.UTC))
    states = {(task, index): state for task, index, state in _instances(failing)}
    assert states[("score_shadow", 0)] == "failed" and states[("publish", -1)] == "success"
    assert str(failing.state) == "failed"
    assert _published(dag_jan_root, "2013-01-27")[0] > 0
    assert [e["extra"]["ds"] for e in _scores_events(failing)] == ["2013-01-27"]
