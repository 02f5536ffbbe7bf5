"""The DAG policy gate, one parametrized module for every DAG.

No import errors; owner, tags, retries >= 2 and a Markdown doc on every DAG;
the expected task graph; DAG files parse fast and pull in no heavy module.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pipelines.core import catalog
from pipelines.core.config import list_datasets, list_projects, load_project
from pipelines.core.settings import PROJECT_ROOT

DAGS = PROJECT_ROOT / "dags"
DAG_FILES = sorted(p for p in DAGS.glob("*.py") if not p.name.startswith("_"))
HEAVY = ("great_expectations", "mlflow", "evidently", "xgboost", "sklearn", "pandas", "pyarrow", "boto3", "numpy")

INGEST = {
    "wait_for_landing": {"validate_shard", "validate_partition"},
    "validate_shard": {"validate_partition"},
    "validate_partition": set(),
}
EXPECTED = {
    "retrain_{}": {"train_challenger": {"gate"}, "gate": {"announce_champion"}, "announce_champion": set()},
    "drift_{}": {"check_drift": {"emit_drift"}, "emit_drift": set()},
    "batch_score_{}": {
        "wait_for_validated": {"plan", "shadow_versions"},
        "plan": {"score_chunk", "publish"},
        "score_chunk": {"publish"},
        "publish": set(),
        # The shadow branch: the champion's publish never waits for it, and each stays a leaf (a failure of
        # either fails the run).
        "shadow_versions": {"score_shadow"},
        "score_shadow": set(),
    },
    "live_gate_{}": {
        "wait_for_champion_lane": {"judge_shadows"},
        "judge_shadows": {"announce_live_champion"},
        "announce_live_champion": set(),
    },
}


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}


def test_a_dag_per_project_and_template_and_one_ingest_dag_per_dataset(dagbag):
    expected = {template.format(p) for p in list_projects() for template in EXPECTED}
    ingest = {f"ingest_{d}" for d in list_datasets()}
    assert expected | ingest == set(dagbag.dag_ids)
    assert {load_project(p).dataset.name for p in list_projects()} <= set(list_datasets())


@pytest.mark.parametrize("dataset", list_datasets())
def test_ingest_task_graph(dagbag, dataset):
    dag = dagbag.dags[f"ingest_{dataset}"]
    assert {t.task_id: set(t.downstream_task_ids) for t in dag.tasks} == INGEST


@pytest.mark.parametrize("project", list_projects())
@pytest.mark.parametrize("template", sorted(EXPECTED))
def test_task_graph(dagbag, template, project):
    dag = dagbag.dags[template.format(project)]
    graph = {t.task_id: set(t.downstream_task_ids) for t in dag.tasks}
    assert graph == EXPECTED[template]


def test_policy_on_every_dag(dagbag):
    assert dagbag.dags
    for dag_id, dag in dagbag.dags.items():
        assert dag.tags, dag_id
        assert dag.doc_md and dag.doc_md.lstrip().startswith("#"), dag_id
        assert dag.owner and dag.owner != "airflow", dag_id
        for task in dag.tasks:
            assert task.retries >= 2, f"{dag_id}.{task.task_id}"
            assert task.owner == dag.owner


def test_ingest_emits_validated_asset(dagbag):
    for dataset in list_datasets():
        dag = dagbag.dags[f"ingest_{dataset}"]
        outlets = dag.get_task("validate_partition").outlets
        assert [o.name for o in outlets] == [f"validated_{dataset}"]
        assert outlets[0].uri.endswith("/" + catalog.validated_table(dataset))
        sensor = dag.get_task("wait_for_landing")
        assert sensor.mode == "reschedule" and sensor.soft_fail and sensor.timeout > 0


def test_publish_announces_the_scores_after_the_chunks_or_after_a_plan_that_published(dagbag):
    """``publish`` runs after the mapped chunks, or after ``plan`` alone when the plan published its one chunk
    (the mapped task is then skipped); a run with nothing to score (sensor skipped) skips it."""
    for project in list_projects():
        dag = dagbag.dags[f"batch_score_{project}"]
        publish = dag.get_task("publish")
        assert [o.name for o in publish.outlets] == [f"scores_{project}"]
        assert publish.trigger_rule == "none_failed_min_one_success"
        assert not dag.get_task("plan").outlets


def test_assets_chain_ingest_to_drift_to_retrain(dagbag):
    """validated -> drift DAG -> drift asset -> retrain DAG -> champion asset: the same assets at both ends.

    Every project follows its dataset's one ingest DAG.
    """
    for project in list_projects():
        ingest = dagbag.dags[f"ingest_{load_project(project).dataset.name}"]
        drift, retrain = (dagbag.dags[f"{t}_{project}"] for t in ("drift", "retrain"))
        validated = ingest.get_task("validate_partition").outlets[0]
        assert drift.timetable.asset_condition == validated
        [emitted] = drift.get_task("emit_drift").outlets
        assert emitted.name == f"drift_{project}"
        assert emitted.uri.endswith("/" + catalog.drift_reports(project))  # the model's drift reports
        assert retrain.timetable.asset_condition == emitted
        assert drift.max_active_runs == 1  # hysteresis reads the partitions before: in order


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda p: p.name)
def test_parse_is_cheap_and_light(dag_file):
    """In a fresh process with Airflow loaded (as the dag-processor has it): time and imports of one file."""
    code = f"""
import importlib.util, json, sys, time
import airflow.sdk
sys.path.insert(0, {str(DAGS)!r})
before = set(sys.modules)
t = time.perf_counter()
spec = importlib.util.spec_from_file_location("dagfile", {str(dag_file)!r})
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
elapsed = time.perf_counter() - t
heavy = sorted({{m.split('.')[0] for m in set(sys.modules) - before}} & set({HEAVY!r}))
print(json.dumps({{"seconds": elapsed, "heavy": heavy}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["heavy"] == []
    # Nothing heavy at parse time (ARCHITECTURE.md, invariant 7): well under a second; typically ~0.2 s here.
    assert result["seconds"] < 1.0, result


def test_the_dags_carry_the_configured_deadlines_and_an_alert_when_a_task_fails_for_good(dagbag):
    """What the scheduler reads: a deadline on the ingest and scoring DAGs of a project that sets one (the
    callback importable where the triggerer runs it), and a failure callback on every task."""
    import datetime as dt

    from airflow.serialization.serialized_objects import DagSerialization

    from pipelines_airflow import alerting

    project = load_project("flights_delay")
    assert project.alerts.deadlines.validated_within_minutes and project.alerts.deadlines.scored_within_minutes
    for dag_id, minutes, what in (
        ("ingest_flights", project.alerts.deadlines.validated_within_minutes, "validated"),
        ("batch_score_flights_delay", project.alerts.deadlines.scored_within_minutes, "scored"),
    ):
        [alert] = dagbag.dags[dag_id].deadline
        # From the logical date (the interval's start): a daily interval, then the minutes allowed.
        assert alert.interval == dt.timedelta(days=1, minutes=minutes), dag_id
        assert alert.reference.reference_name == "DagRunLogicalDateDeadline", alert.reference
        assert (
            alert.callback.path == "pipelines_airflow.alerting.deadline_missed"
            and alert.callback.kwargs["what"] == what
        )
        assert [t["kind"] for t in alert.callback.kwargs["target_specs"]] == ["webhook", "email"]
        DagSerialization.serialize_dag(dagbag.dags[dag_id])  # the DAG processor can store it
    assert callable(alerting.deadline_missed)
    assert load_project("flights_air_time").alerts.webhook is None
    assert not dagbag.dags["batch_score_flights_air_time"].deadline  # no target: no deadline to watch
    for dag in dagbag.dags.values():
        for t in dag.tasks:
            assert t.on_failure_callback, (dag.dag_id, t.task_id)
