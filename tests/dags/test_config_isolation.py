"""A bad model config breaks only its own project's DAGs, a bad dataset config only its ingest DAG and its readers';
one import error names every bad config file.

The DagBag is built over the real ``dags/`` with ``PIPELINES_CONFIG_DIR``
pointing at a config folder holding the shipped ``flights_delay.yaml`` beside
broken copies of it.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from pipelines.core.settings import PROJECT_ROOT

DAGS = PROJECT_ROOT / "dags"
CONFIGS = PROJECT_ROOT / "configs"
TEMPLATES = ("drift", "retrain", "batch_score", "live_gate")
GOOD_DAGS = {f"{t}_flights_delay" for t in TEMPLATES} | {"ingest_flights"}


def renamed(name: str, extra: bytes = b"") -> bytes:
    """The shipped config as project ``name``, with extra top-level lines."""
    good = (CONFIGS / "flights_delay.yaml").read_bytes()
    assert good.count(b"\nname: flights_delay\n") == 1
    return good.replace(b"\nname: flights_delay\n", b"\nname: " + name.encode() + b"\n" + extra, 1)


@pytest.fixture
def mixed_configs(tmp_path, monkeypatch) -> Path:
    """flights_delay (good), unknown_key (a key no model knows), latin1 (a latin-1 byte), Bad-Name (no project name),
    on_trains (good, but reads the dataset trains, whose config has a bad schedule)."""
    d = tmp_path / "configs"
    shutil.copytree(CONFIGS / "profiles", d / "profiles")
    shutil.copytree(CONFIGS / "datasets", d / "datasets")
    shutil.copy(CONFIGS / "flights_delay.yaml", d / "flights_delay.yaml")
    trains = (CONFIGS / "datasets" / "flights.yaml").read_bytes().replace(b"name: flights\n", b"name: trains\n", 1)
    (d / "datasets" / "trains.yaml").write_bytes(trains.replace(b'schedule: "@daily"', b'schedule: "@fortnightly"'))
    (d / "on_trains.yaml").write_bytes(renamed("on_trains").replace(b"\ndataset: flights", b"\ndataset: trains"))
    (d / "unknown_key.yaml").write_bytes(renamed("unknown_key", b"surprise: 1\n"))
    (d / "latin1.yaml").write_bytes(b"# caf\xe9\n" + renamed("latin1"))
    (d / "Bad-Name.yaml").write_bytes(renamed("bad_name"))
    monkeypatch.setenv("PIPELINES_CONFIG_DIR", str(d))
    return d


def test_a_bad_config_breaks_only_its_own_dags(mixed_configs):
    from airflow.dag_processing.dagbag import DagBag

    dagbag = DagBag(dag_folder=str(DAGS))
    # The good project's four DAGs load, and nothing else: the broken projects have none.
    assert set(dagbag.dag_ids) == GOOD_DAGS
    for dag_id in GOOD_DAGS:
        assert dagbag.dags[dag_id].tasks
    # One import error, on the report file, naming each bad config file and its problem.
    [(path, message)] = dagbag.import_errors.items()
    assert Path(path).name == "project_configs.py"
    assert "5 config file(s) failed to load" in message
    assert f"{mixed_configs / 'datasets' / 'trains.yaml'}: ingest.schedule: not a cron expression" in message
    assert f"{mixed_configs / 'on_trains.yaml'}: dataset 'trains' does not load" in message
    assert f"{mixed_configs / 'unknown_key.yaml'}: surprise: unknown key" in message
    assert f"{mixed_configs / 'latin1.yaml'}: not UTF-8: byte 0xe9 at offset 5 (line 1)" in message
    assert f"{mixed_configs / 'Bad-Name.yaml'}: not read: 'Bad-Name' is not a project name" in message
    assert "flights_delay.yaml" not in message and "flights.yaml" not in message


def test_each_dag_file_logs_the_configs_it_skips(mixed_configs, caplog):
    from _common import projects

    with caplog.at_level(logging.WARNING, logger="_common"):
        assert [p.name for p in projects()] == ["flights_delay"]
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name == "_common")
    for name in ("unknown_key.yaml", "latin1.yaml", "Bad-Name.yaml", "on_trains.yaml"):
        assert str(mixed_configs / name) in logged


def test_the_report_file_is_parsed_and_quiet_when_every_config_loads(tmp_path, monkeypatch):
    """Airflow's safe mode parses it (it says "airflow" and "dag"); with good configs it defines and raises nothing."""
    from airflow.dag_processing.dagbag import DagBag

    d = tmp_path / "configs"
    shutil.copytree(CONFIGS, d)
    monkeypatch.setenv("PIPELINES_CONFIG_DIR", str(d))
    report = DAGS / "project_configs.py"
    dagbag = DagBag(dag_folder=str(report), safe_mode=True)
    assert str(report) in dagbag.file_last_changed  # not skipped by the safe-mode heuristic
    assert dagbag.import_errors == {}
    assert dagbag.dag_ids == []
