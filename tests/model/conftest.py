"""A validated January 2013 shared by the model tests (built once per session)."""

from __future__ import annotations

import shutil

import pytest


@pytest.fixture(scope="session")
def january(tmp_path_factory):
    """A storage root with validated partitions for 2013-01-01..31 (no faults)."""
    import logging

    from pipelines.config import load_project
    from pipelines.demo import seed_demo
    from pipelines.partitions import date_range
    from pipelines.storage import LocalStorage
    from pipelines.validation import validate_partition

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
    shutil.copytree(january / "validated", root / "validated")
    monkeypatch.setenv("PIPELINES_DATA_ROOT", str(root))
    monkeypatch.setenv("PIPELINES_CODE_VERSION", "test")
    return root
