"""Model configs and profiles: valid ones load, invalid ones fail with file, key and problem."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from pipelines.core.config import list_projects, load_project
from pipelines.core.errors import ConfigError
from pipelines.core.settings import PROJECT_ROOT, get_settings

CONFIGS = PROJECT_ROOT / "configs"


@pytest.fixture
def config_dir(tmp_path, monkeypatch) -> Path:
    d = tmp_path / "configs"
    shutil.copytree(CONFIGS, d)
    monkeypatch.setenv("PIPELINES_CONFIG_DIR", str(d))
    return d


def write(config_dir: Path, name: str, mutate) -> None:
    raw = yaml.safe_load((CONFIGS / "flights_delay.yaml").read_text())
    mutate(raw)
    raw["name"] = raw.get("name", name)
    (config_dir / f"{name}.yaml").write_text(yaml.safe_dump(raw))


def test_every_shipped_project_loads():
    names = list_projects()
    assert "flights_delay" in names
    for name in names:
        project = load_project(name)
        assert project.name == name
        assert (PROJECT_ROOT / "data_contracts" / project.dataset.contract).is_file()


def test_error_names_file_key_and_problem(config_dir):
    def bad(raw):
        raw["training"]["window_days"] = -3

    write(config_dir, "flights_delay", bad)
    with pytest.raises(ConfigError) as exc:
        load_project("flights_delay")
    msg = str(exc.value)
    assert str(config_dir / "flights_delay.yaml") in msg
    assert "training.window_days" in msg and "greater than 1" in msg and "-3" in msg
    assert "\n" not in msg


@pytest.mark.parametrize(
    ("mutate", "key", "problem"),
    [
        (lambda r: r["target"].update(task="clustering"), "target.task", "classification"),
        (lambda r: r["target"].pop("positive_threshold"), "target", "positive_threshold"),
        (lambda r: r.update(unknown_section={}), "unknown_section", "unknown key"),
        (lambda r: r["dataset"].pop("contract"), "dataset.contract", "Field required"),
        (lambda r: r["training"].update(holdout_days=90), "training", "holdout_days must be smaller"),
        (lambda r: r["ingest"].update(retries=0), "ingest.retries", "greater than or equal to 2"),
        (lambda r: r["features"].update(numeric=["distance", "distance"]), "features", "listed twice"),
        (lambda r: r["dataset"].update(name="../etc"), "dataset.name", "pattern"),
    ],
)
def test_invalid_configs(config_dir, mutate, key, problem):
    write(config_dir, "flights_delay", mutate)
    with pytest.raises(ConfigError) as exc:
        load_project("flights_delay")
    assert key in str(exc.value) and problem in str(exc.value)


def test_name_must_match_file(config_dir):
    write(config_dir, "other_model", lambda r: None)
    with pytest.raises(ConfigError, match="must equal the file name"):
        load_project("other_model")


def test_not_yaml(config_dir):
    (config_dir / "broken.yaml").write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_project("broken")


@pytest.mark.parametrize("name", ["../flights_delay", "Flights", "nope"])
def test_unknown_or_unsafe_project_names(name):
    with pytest.raises(ConfigError):
        load_project(name)


def test_environment_overrides_profile(monkeypatch, tmp_path):
    monkeypatch.delenv("PIPELINES_PROFILE", raising=False)
    monkeypatch.delenv("PIPELINES_DATA_ROOT", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    local = get_settings()
    assert local.profile == "local"
    assert local.data_root == str(PROJECT_ROOT / "data")
    assert local.mlflow_tracking_uri == f"sqlite:///{PROJECT_ROOT / 'data/mlflow/mlflow.db'}"
    assert local.mlflow_artifact_root == str(PROJECT_ROOT / "data/mlflow/artifacts")
    monkeypatch.setenv("PIPELINES_DATA_ROOT", "s3://bucket/prefix/")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    s = get_settings()
    assert s.data_root == "s3://bucket/prefix" and s.is_s3
    assert s.aws_endpoint_url == "http://127.0.0.1:9000"
    assert s.mlflow_tracking_uri == "http://127.0.0.1:5000"


def test_prod_profile_and_unknown_profile(monkeypatch):
    monkeypatch.delenv("PIPELINES_DATA_ROOT", raising=False)
    monkeypatch.setenv("PIPELINES_PROFILE", "prod")
    monkeypatch.delenv("PIPELINES_MLFLOW_ARTIFACT_ROOT", raising=False)
    assert get_settings().data_root.startswith("s3://")
    assert get_settings().mlflow_artifact_root == "mlflow-artifacts:"  # proxied by the server, not a path
    monkeypatch.setenv("PIPELINES_PROFILE", "staging")
    with pytest.raises(ConfigError, match="profile 'staging' not found"):
        get_settings()
