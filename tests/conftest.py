"""Shared fixtures.

Every test gets an empty storage root (``PIPELINES_DATA_ROOT``) so tests never
see each other's partitions. Services a test needs are started by the test;
``require`` fails instead of skipping when ``CI=true``.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DAGS = ROOT / "dags"
if str(DAGS) not in sys.path:
    sys.path.insert(0, str(DAGS))

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
os.environ.setdefault("DO_NOT_TRACK", "1")
# Airflow reads its configuration once, at first import: give the whole test
# session its own home (SQLite metadata DB) before anything imports airflow.
if "AIRFLOW_HOME" not in os.environ or os.environ.get("PIPELINES_TEST_KEEP_AIRFLOW_HOME") != "1":
    import tempfile

    os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="airflow-test-")
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(DAGS)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "False")
# Asset events queue runs only for unpaused DAGs: DAGs that dag.test() registers start unpaused.
os.environ["AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION"] = "False"


def require(condition: bool, reason: str) -> None:
    """Skip a test whose service is missing; in CI (``CI=true``) fail instead."""
    if condition:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"required service missing in CI: {reason}")
    pytest.skip(reason)


DATASET = "flights"  # the dataset of the flights_delay model, as the seeded roots hold it


def validated_tables(root: Path, *, with_reports: bool = False) -> list[str]:
    """The catalog's folders of the dataset's validated table (and its validation reports) under a root."""
    from pipelines.core import catalog

    tables = [catalog.validated_table(DATASET)] + ([catalog.validation_reports(DATASET)] if with_reports else [])
    for table in tables:
        assert (root / table).is_dir(), f"{root} holds no {table}"
    return tables


def copy_tables(src: Path, dst: Path, tables: list[str]) -> None:
    """Copy catalog folders (tables, report folders) from one storage root to another."""
    for table in tables:
        shutil.copytree(src / table, dst / table)


@pytest.fixture
def data_root(tmp_path, monkeypatch) -> Path:
    """An empty local storage root for this test."""
    root = tmp_path / "data"
    root.mkdir()
    monkeypatch.setenv("PIPELINES_DATA_ROOT", str(root))
    monkeypatch.delenv("PIPELINES_PROFILE", raising=False)
    return root


@pytest.fixture
def storage(data_root):
    from pipelines.core.storage import get_storage

    return get_storage()


@pytest.fixture
def project(data_root):
    from pipelines.core.config import load_project

    return load_project("flights_delay")


@pytest.fixture(scope="session")
def contract():
    from pipelines.core.contracts import load_contract

    return load_contract(ROOT / "data_contracts" / "flights.odcs.yaml")


# ---- a validated January 2013, built once per session (model and DAG tests)


@pytest.fixture(scope="session")
def january(tmp_path_factory):
    """A storage root with validated partitions for 2013-01-01..31 (no faults)."""
    import logging

    from pipelines.core.config import load_project
    from pipelines.core.partitions import date_range
    from pipelines.core.storage import LocalStorage
    from pipelines.ingest.validation import validate_partition
    from pipelines_ops.demo_data import seed_demo

    root = tmp_path_factory.mktemp("january") / "data"
    storage = LocalStorage(root)
    project = load_project("flights_delay")
    logging.getLogger("pipelines").setLevel(logging.WARNING)
    seed_demo(project, "2013-01-01", "2013-01-31", storage=storage)
    for ds in date_range("2013-01-01", "2013-01-31"):
        validate_partition(project, ds, storage=storage)
    return root


@pytest.fixture
def jan_root(january, tmp_path, monkeypatch):
    """A private copy of the validated January, with its own MLflow store."""
    root = tmp_path / "data"
    copy_tables(january, root, validated_tables(january))
    monkeypatch.setenv("PIPELINES_DATA_ROOT", str(root))
    monkeypatch.setenv("PIPELINES_CODE_VERSION", "test")
    return root


@pytest.fixture(scope="session")
def seasons(january, tmp_path_factory):
    """Validated January, 2013-02-01..14 and 2013-06-10..07-08 (no faults): winter and summer for drift."""
    import logging

    from pipelines.core.config import load_project
    from pipelines.core.partitions import date_range
    from pipelines.core.storage import LocalStorage
    from pipelines.ingest.validation import validate_partition
    from pipelines_ops.demo_data import seed_demo

    root = tmp_path_factory.mktemp("seasons") / "data"
    copy_tables(january, root, validated_tables(january))
    storage = LocalStorage(root)
    project = load_project("flights_delay")
    logging.getLogger("pipelines").setLevel(logging.WARNING)
    for start, end in (("2013-02-01", "2013-02-14"), ("2013-06-10", "2013-07-08")):
        seed_demo(project, start, end, storage=storage)
        for ds in date_range(start, end):
            validate_partition(project, ds, storage=storage)
    return root


@pytest.fixture
def seasons_root(seasons, tmp_path, monkeypatch):
    """A private copy of ``seasons`` with its own MLflow store and no champion yet."""
    root = tmp_path / "data"
    copy_tables(seasons, root, validated_tables(seasons, with_reports=True))
    monkeypatch.setenv("PIPELINES_DATA_ROOT", str(root))
    monkeypatch.setenv("PIPELINES_CODE_VERSION", "test")
    return root
