"""Model configs and profiles: valid ones load, invalid ones fail with file, key and problem."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from pipelines.core.config import (
    list_datasets,
    list_projects,
    load_dataset,
    load_datasets,
    load_project,
    load_projects,
)
from pipelines.core.errors import ConfigError
from pipelines.core.settings import PROJECT_ROOT, get_settings

CONFIGS = PROJECT_ROOT / "configs"
#: The model projects the repo ships (both read the flights dataset).
SHIPPED = ["flights_air_time", "flights_delay"]


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


def write_dataset(config_dir: Path, name: str, mutate) -> None:
    raw = yaml.safe_load((CONFIGS / "datasets" / "flights.yaml").read_text())
    mutate(raw)
    raw["name"] = raw.get("name", name)
    (config_dir / "datasets" / f"{name}.yaml").write_text(yaml.safe_dump(raw))


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
        (lambda r: r["training"].update(holdout_days=90), "training", "holdout_days must be smaller"),
        (lambda r: r["features"].update(numeric=["distance", "distance"]), "features", "listed twice"),
        (lambda r: r.update(dataset="../etc"), "dataset", "not a dataset name"),
        (lambda r: r.update(dataset="trains"), "dataset 'trains' does not load", "no such dataset (known: flights)"),
        (lambda r: r.pop("dataset"), "dataset", "Field required"),
        # The shape before datasets were declared once: a clear way forward, not a pile of unknown keys.
        (
            lambda r: r.update(dataset={"name": "flights", "contract": "flights.odcs.yaml"}),
            "dataset",
            "declared once, in",
        ),
        (lambda r: r.update(ingest={"start_date": "2013-01-01"}), "dataset", "declared once, in"),
    ],
)
def test_invalid_configs(config_dir, mutate, key, problem):
    write(config_dir, "flights_delay", mutate)
    with pytest.raises(ConfigError) as exc:
        load_project("flights_delay")
    assert key in str(exc.value) and problem in str(exc.value)


@pytest.mark.parametrize(
    ("mutate", "key", "problem"),
    [
        (lambda r: r.pop("contract"), "contract", "Field required"),
        (lambda r: r["ingest"].update(retries=0), "ingest.retries", "greater than or equal to 2"),
        (lambda r: r.update(contract="../x.yaml"), "contract", "pattern"),
        (lambda r: r["ingest"].update(end_date="2012-01-01"), "ingest", "end_date is before start_date"),
    ],
)
def test_invalid_datasets_name_the_file_and_break_the_projects_reading_them(config_dir, mutate, key, problem):
    write_dataset(config_dir, "flights", mutate)
    with pytest.raises(ConfigError) as exc:
        load_dataset("flights")
    message = str(exc.value)
    assert str(config_dir / "datasets" / "flights.yaml") in message and key in message and problem in message
    assert "\n" not in message
    scan = load_projects()
    assert scan.projects == [] and any("dataset 'flights' does not load" in p and problem in p for p in scan.problems)


def test_two_projects_share_one_declared_dataset(config_dir):
    write(config_dir, "second", lambda r: r.update(name="second"))
    write_dataset(config_dir, "trains", lambda r: r.update(name="trains"))
    (config_dir / "datasets" / "Bad Name.yaml").write_text("name: x\n")
    assert list_datasets() == ["flights", "trains"]
    first, second = load_project("flights_delay"), load_project("second")
    assert first.dataset == second.dataset and first.dataset.source == config_dir / "datasets" / "flights.yaml"
    assert first.dataset.ingest.start_date.isoformat() == "2013-01-01"
    scan = load_datasets()
    assert [d.name for d in scan.datasets] == ["flights", "trains"]
    assert len(scan.problems) == 1 and "Bad Name.yaml" in scan.problems[0]


def test_name_must_match_file(config_dir):
    write(config_dir, "other_model", lambda r: None)
    with pytest.raises(ConfigError, match="must equal the file name"):
        load_project("other_model")


def config_error(config_dir: Path, name: str, content: bytes) -> str:
    """The ConfigError message of loading ``content`` as project ``name``: one line, naming the file first."""
    path = config_dir / f"{name}.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as exc:
        load_project(name)
    msg = str(exc.value)
    assert msg.startswith(f"{path}: ") and "\n" not in msg, msg
    return msg


def test_not_utf8_names_the_byte_and_its_offset(config_dir):
    good = (CONFIGS / "flights_delay.yaml").read_bytes()
    content = b"# flights_delay\n# Caf\xe9 au lait\n" + good  # a latin-1 comment
    msg = config_error(config_dir, "flights_delay", content)
    assert "not UTF-8: byte 0xe9 at offset 21 (line 2)" in msg
    assert content[21:22] == b"\xe9"


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"name: [unclosed\n", "expected ',' or ']', but got '<stream end>' (line 2, column 1)"),
        (b"name: a\n---\nname: b\n", "but found another document (line 2, column 1)"),
        (b"name: a\n  b: c\n", "mapping values are not allowed here (line 2, column 4)"),
        (
            b"name: a\nowner: b\x07\n",
            "unacceptable character #x0007: special characters are not allowed (line 2, column 9)",
        ),
        (b"ingest:\n  start_date: 2013-02-30\n", "'2013-02-30': day is out of range for month (line 2, column 15)"),
    ],
    ids=["unclosed", "two-documents", "bad-indent", "control-character", "impossible-date"],
)
def test_not_yaml_names_the_problem_and_where(config_dir, content, problem):
    msg = config_error(config_dir, "broken", content)
    assert "not valid YAML" in msg and problem in msg


@pytest.mark.parametrize("content", [b"", b"\n  \n", b"# only a comment\n", b"---\n"])
def test_empty_file(config_dir, content):
    msg = config_error(config_dir, "empty", content)
    assert msg.endswith(": empty: expected a mapping of project settings")


@pytest.mark.parametrize(
    ("content", "got"),
    [(b"- name: a\n- name: b\n", "got list [{'name': 'a'}"), (b"just words\n", "got str 'just words'")],
)
def test_document_that_is_not_a_mapping(config_dir, content, got):
    msg = config_error(config_dir, "listed", content)
    assert "<root>: expected a mapping" in msg and got in msg


def test_unreadable_entry(config_dir):
    (config_dir / "folder.yaml").mkdir()
    with pytest.raises(ConfigError, match=r"folder\.yaml: cannot read: Is a directory"):
        load_project("folder")


def test_list_and_load_projects_skip_and_report_files_that_are_no_project(config_dir):
    shutil.copy(config_dir / "flights_delay.yaml", config_dir / "Flights-Delay.yaml")
    shutil.copy(config_dir / "flights_delay.yaml", config_dir / "other.yml")
    (config_dir / ".flights_delay.yaml").write_bytes(b"\xff editor swap")  # hidden: ignored
    (config_dir / "notes.txt").write_text("not a config")
    assert list_projects() == SHIPPED
    scan = load_projects()
    assert [p.name for p in scan.projects] == SHIPPED
    assert scan.problems == [
        f"{config_dir / 'Flights-Delay.yaml'}: not read: 'Flights-Delay' is not a project name "
        "(lowercase letters, digits and _, a letter first, at most 63 characters)",
        f"{config_dir / 'other.yml'}: not read: a model config is named <project>.yaml",
    ]


def test_load_projects_reports_every_bad_config_and_keeps_the_good_ones(config_dir):
    write(config_dir, "unknown_key", lambda r: r.update(name="unknown_key", surprise=1))
    (config_dir / "latin1.yaml").write_bytes(b"# caf\xe9\n")
    (config_dir / "empty.yaml").write_bytes(b"")
    scan = load_projects()
    assert [p.name for p in scan.projects] == SHIPPED
    assert scan.problems == [
        f"{config_dir / 'empty.yaml'}: empty: expected a mapping of project settings",
        f"{config_dir / 'latin1.yaml'}: not UTF-8: byte 0xe9 at offset 5 (line 1); save it as UTF-8",
        f"{config_dir / 'unknown_key.yaml'}: surprise: unknown key",
    ]


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


def test_values_airflow_would_refuse_are_config_problems_not_dag_import_errors(config_dir):
    """A tag Airflow refuses, a sensor timeout beyond a timedelta, YAML nested thousands deep: this file's problem."""
    write(config_dir, "long_tag", lambda r: r.update(name="long_tag", tags=["x" * 101]))
    write(
        config_dir,
        "huge_timeout",
        lambda r: (r.update(name="huge_timeout"), r["scoring"].update(sensor_timeout_minutes=10**12)),
    )
    (config_dir / "deep.yaml").write_text("a: " + "[" * 20_000 + "]" * 20_000 + "\n")
    scan = load_projects()
    assert [p.name for p in scan.projects] == SHIPPED
    by_file = {problem.split(":", 1)[0]: problem for problem in scan.problems}
    assert "tags" in by_file[str(config_dir / "long_tag.yaml")]
    assert "sensor_timeout_minutes" in by_file[str(config_dir / "huge_timeout.yaml")]
    assert (
        "nested too deeply" in by_file[str(config_dir / "deep.yaml")]
        or "not valid YAML" in by_file[str(config_dir / "deep.yaml")]
    )
