"""Shared wiring for the generated DAGs (not a DAG file: see .airflowignore).

Only cheap work happens at import: reading the small model-project YAML files
and the environment profile. Nothing here touches the network, the metadata
database or MLflow; heavy imports live inside task bodies.

A bad dataset config breaks only its ingest DAG and the DAGs of the projects
that read it; a bad model config breaks only its own project's DAGs. ``projects()`` returns
the projects whose config loads and logs a warning naming each config file
that does not, so every DAG file builds the good projects' DAGs and leaves the
bad ones out (Airflow then marks a bad project's earlier DAGs stale). The UI
names the bad files through ``project_configs.py``: that DAG file raises one
import error listing each of them with its problem, and defines nothing while
every config loads. A bad environment profile still fails every DAG file: it
is no project's, and nothing can be built without it.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from pipelines.core import catalog
from pipelines.core.config import DatasetConfig, ProjectConfig, load_datasets, load_projects

log = logging.getLogger(__name__)


def projects() -> list[ProjectConfig]:
    """The model projects whose config loads; a bad config is logged and left out (see the module doc)."""
    scan = load_projects()
    for problem in scan.problems:
        log.warning("model config skipped, its DAGs are not built (see project_configs.py): %s", problem)
    return scan.projects


def datasets() -> list[DatasetConfig]:
    """The datasets whose config loads; a bad one is logged and left out (its ingest DAG is not built)."""
    scan = load_datasets()
    for problem in scan.problems:
        log.warning("dataset config skipped, its ingest DAG is not built (see project_configs.py): %s", problem)
    return scan.datasets


def build_each_dataset(prefix: str, build: Any, namespace: dict[str, Any]) -> None:
    """Build ``<prefix>_<dataset>`` for every dataset into a DAG file's globals; a failing one is logged, skipped."""
    for dataset in datasets():
        try:
            namespace[f"{prefix}_{dataset.name}"] = build(dataset)
        except Exception:
            log.exception("%s_%s not built from %s; the other DAGs are", prefix, dataset.name, dataset.source)


def build_each(prefix: str, build: Any, namespace: dict[str, Any]) -> None:
    """Build ``<prefix>_<project>`` for every project into a DAG file's globals; one that fails is logged and skipped.

    Config validation catches what it can; a project whose DAG still fails to
    build (a value Airflow refuses) must not take the other projects' DAGs down.
    """
    for project in projects():
        try:
            namespace[f"{prefix}_{project.name}"] = build(project)
        except Exception:
            log.exception("%s_%s not built from %s; the other projects' DAGs are", prefix, project.name, project.source)


def config_problems() -> list[str]:
    """One line per dataset or model config file that does not load, naming the file and the problem."""
    return load_datasets().problems + load_projects().problems


def as_datetime(day: dt.date | None) -> dt.datetime | None:
    return None if day is None else dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


def alert_configs(source: ProjectConfig | DatasetConfig) -> list[Any]:
    """The ``alerts`` configs a DAG sends to: its project's, or every project reading its dataset."""
    if isinstance(source, ProjectConfig):
        return [source.alerts]
    return [p.alerts for p in projects() if p.dataset.name == source.name]


def default_args(project: ProjectConfig | DatasetConfig, retries: int) -> dict[str, Any]:
    """Task defaults: owner, at least two retries with exponential backoff, an alert when a task fails for good."""
    from pipelines_airflow.alerting import on_failure

    return {
        "owner": project.owner,
        "retries": max(2, retries),
        "retry_delay": dt.timedelta(seconds=30),
        "retry_exponential_backoff": True,
        "max_retry_delay": dt.timedelta(minutes=10),
        "on_failure_callback": on_failure(project.name, alert_configs(project)),
    }


def send_alert(source: ProjectConfig | DatasetConfig, alert: Any, context: Any) -> dict[str, str]:
    """Deliver a library-written alert to the DAG's targets; a failing target is logged, never raised."""
    from pipelines_airflow.alerting import send

    try:  # the readers' configs are read again here: an unreadable one must not change the task's outcome
        configs = alert_configs(source)
    except Exception:
        log.warning("alert not sent: the alert targets of %s could not be read", source.name, exc_info=True)
        return {}
    return send(configs, alert, context)


def deadline_alert(
    source: ProjectConfig | DatasetConfig, dag_id: str, what: str, minutes: int | None, schedule: str
) -> Any:
    """The DAG's deadline alert (``deadline=`` of the DAG), or None when none is configured."""
    from pipelines_airflow.alerting import deadline

    return deadline(source.name, alert_configs(source), dag_id=dag_id, what=what, minutes=minutes, schedule=schedule)


def storage_uri(key: str) -> str:
    """URI of a storage folder the catalog names, from settings only (no network, no S3 client)."""
    from pipelines.core.storage import get_storage

    return get_storage().uri(key)


def validated_asset(source: ProjectConfig | DatasetConfig) -> Any:
    """Event per validated partition of a dataset (``extra["ds"]`` names it); a project follows its dataset's."""
    from airflow.sdk import Asset

    from pipelines.core.config import dataset_of

    name = dataset_of(source).name
    return Asset(name=f"validated_{name}", uri=storage_uri(catalog.validated_table(name)), group="validated")


def drift_asset(project: ProjectConfig) -> Any:
    """Event when the drift policy of the project fires (it triggers the retrain DAG)."""
    from airflow.sdk import Asset

    return Asset(name=f"drift_{project.name}", uri=storage_uri(catalog.drift_reports(project.name)), group="drift")


def champion_asset(project: ProjectConfig) -> Any:
    """Event when the project's champion alias moves."""
    from airflow.sdk import Asset

    return Asset(name=f"champion_{project.name}", uri=f"mlflow://models/{project.name}/champion", group="models")


def partition_from_context(context: Any) -> str:
    """The run's partition key, through the one tested helper."""
    from pipelines.core.partitions import resolve_partition

    return resolve_partition(
        params=context.get("params"),
        logical_date=context.get("logical_date"),
        triggering_asset_events=context.get("triggering_asset_events"),
    )


def scores_asset(project: ProjectConfig) -> Any:
    """Event per published scores partition of the project (``extra["ds"]`` names it)."""
    from airflow.sdk import Asset

    return Asset(name=f"scores_{project.name}", uri=storage_uri(catalog.scores_table(project.name)), group="scores")


def shadow_asset(project: ProjectConfig) -> Any:
    """Event per published shadow-lane partition of the project (``extra``: ``ds``, ``model_version``)."""
    from airflow.sdk import Asset

    uri = storage_uri(catalog.shadow_table(project.name))
    return Asset(name=f"shadow_scores_{project.name}", uri=uri, group="scores")


def reschedule_sensor(task_id: str, poke_seconds: int, timeout_minutes: int) -> Any:
    """A ``@task.sensor`` that frees its slot between pokes and *skips* the run on timeout (nothing came)."""
    from airflow.sdk import task

    return task.sensor(
        task_id=task_id,
        mode="reschedule",
        poke_interval=poke_seconds,
        timeout=dt.timedelta(minutes=timeout_minutes).total_seconds(),
        soft_fail=True,
    )
