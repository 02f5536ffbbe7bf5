"""Training sets and challenger training against a real (file) MLflow store."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from pipelines.core import catalog
from pipelines.core.config import load_project
from pipelines.core.errors import MissingInput
from pipelines.training.dataset import build_training_set, window
from pipelines.training.train import train_challenger


def test_window_keeps_the_holdout_last():
    days = window(load_project("flights_delay"), "2013-01-31")
    assert days["train"][0] == "2012-12-03" and days["train"][-1] == "2013-01-24"
    assert days["holdout"] == [f"2013-01-{d}" for d in range(25, 32)]


def test_training_set_is_deterministic_and_holdout_disjoint(jan_root):
    project = load_project("flights_delay")
    a = build_training_set(project, "2013-01-31")
    b = build_training_set(project, "2013-01-31")
    assert a["fingerprint"] == b["fingerprint"] and a["fingerprint"].endswith(".dir")
    assert a["train_days"] == ["2013-01-01", "2013-01-24"] and a["holdout_days"] == ["2013-01-25", "2013-01-31"]
    assert len(a["missing_days"]) == 29  # December 2012: before the feed starts
    train, hold = a["frames"]["train"], a["frames"]["holdout"]
    assert set(train["ds"]).isdisjoint(hold["ds"])
    assert a["train_rows"] + a["holdout_rows"] == 27004
    # The training set's record sits beside its two files and says what they hold.
    from pipelines.core.storage import get_storage

    record = get_storage().read_json(catalog.training_set_record("flights_delay", "2013-01-31"))
    assert record == {k: v for k, v in a.items() if k != "frames"}
    assert set(record["files"]) == {catalog.TRAIN_FILE, catalog.HOLDOUT_FILE}


def test_a_window_over_the_cap_is_read_as_a_seeded_sample_recorded_with_the_set(jan_root):
    """The training rows are ~20k and the holdout ~6k: capped at 5,000, each part is a seeded sample."""
    base = load_project("flights_delay")
    capped = base.model_copy(
        update={
            "training": base.training.model_copy(
                update={"sample": base.training.sample.model_copy(update={"max_rows": 5_000})}
            )
        }
    )
    full = build_training_set(base, "2013-01-31")
    a = build_training_set(capped, "2013-01-31")
    b = build_training_set(capped, "2013-01-31")
    assert a["fingerprint"] == b["fingerprint"] != full["fingerprint"]  # the same rows every time; other rows
    assert full["sample"]["train"] == {
        "rows_in_window": full["train_rows"],
        "rows": full["train_rows"],
        "rate": 1.0,
        "seed": None,
        "method": "none",
    }
    for part in ("train", "holdout"):
        rec = a["sample"][part]
        assert rec["rows_in_window"] == full[f"{part}_rows"] and rec["seed"] == base.training.sample.seed
        assert rec["rate"] == pytest.approx(5_000 / rec["rows_in_window"])
        assert rec["rows"] == a[f"{part}_rows"] and 4_500 < rec["rows"] < 5_500  # about the cap
        kept = a["frames"][part].merge(full["frames"][part], how="left", indicator=True)
        assert (kept["_merge"] == "both").all()  # a sample of the window's rows, nothing else
    assert set(a["frames"]["train"]["ds"]) == set(full["frames"]["train"]["ds"])  # every day represented
    from pipelines.training.train import config_hash

    assert config_hash(capped) == config_hash(base)  # the sample shows in the data's fingerprint instead


def test_fingerprint_is_what_dvc_computes(jan_root, tmp_path):
    """`dvc add` on the written training folder reports the same directory hash."""
    project = load_project("flights_delay")
    ts = build_training_set(project, "2013-01-31")
    repo = tmp_path / "repo"
    repo.mkdir()
    folder = jan_root / catalog.training_dir("flights_delay", "2013-01-31")
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [catalog.TRAINING_SET_FILE, catalog.TRAIN_FILE, catalog.HOLDOUT_FILE]
    )
    shutil.copytree(folder, repo / "set", ignore=shutil.ignore_patterns(catalog.TRAINING_SET_FILE))
    dvc = str(Path(sys.executable).with_name("dvc"))  # the locked env's dvc, PATH or not
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run([dvc, "init", "-q"], cwd=repo, check=True)
    subprocess.run([dvc, "add", "-q", "set"], cwd=repo, check=True)
    import yaml

    outs = yaml.safe_load((repo / "set.dvc").read_text())["outs"][0]
    assert outs["md5"] == ts["fingerprint"]


def test_no_data_is_a_named_error(jan_root):
    with pytest.raises(MissingInput, match="no validated data"):
        build_training_set(load_project("flights_delay"), "2013-03-31")


def test_train_logs_and_registers_a_version(jan_root, caplog):
    import mlflow

    from pipelines.core.tracking import client

    with caplog.at_level("INFO", logger="pipelines"):
        r = train_challenger(load_project("flights_delay"), "2013-01-31")
    assert r["version"] == "1" and r["metrics"]["roc_auc"] > 0.55
    # A long fit reports its progress in the task log: every tenth of the 300 rounds, then done.
    rounds = [m for m in caplog.messages if "boosting round" in m]
    assert len(rounds) == 10 and "round 30/300" in rounds[0] and "round 300/300" in rounds[-1], rounds
    assert any("fitted XGBClassifier in" in m for m in caplog.messages)
    c = client()
    mv = c.get_model_version("flights_delay", "1")
    assert mv.run_id == r["run_id"]
    assert mv.tags["data_fingerprint"] == r["fingerprint"] and mv.tags["contract_version"] == "1.0.0"
    run = c.get_run(r["run_id"])
    assert run.data.tags["trigger"] == "manual" and run.data.tags["code_version"] == "test"
    assert run.data.tags["training_window"] == "2013-01-01..2013-01-24"
    sample = json.loads(run.data.tags["training_sample"])  # whether (and how) the window was sampled
    assert sample["train"]["method"] == "none" and run.data.params["sample_rate"] == "1.0"
    for name in ("holdout_roc_auc", "holdout_pr_auc", "holdout_log_loss", "holdout_brier"):
        assert name in run.data.metrics
    contexts = {i.tags[0].value for i in run.inputs.dataset_inputs}
    assert contexts == {"training", "evaluation"}
    assert (
        {a.path for a in c.list_artifacts(r["run_id"], catalog.REFERENCE_DIR)}
        == {
            "reference/profile.json",
            "reference/drift_reference.parquet",
            "reference/holdout_scores.parquet",
        }
        == {catalog.REFERENCE_PROFILE, catalog.DRIFT_REFERENCE, catalog.HOLDOUT_SCORES_REFERENCE}
    )
    profile = json.loads(
        open(mlflow.artifacts.download_artifacts(run_id=r["run_id"], artifact_path=catalog.REFERENCE_PROFILE)).read()
    )
    assert set(profile["categorical"]) == {"carrier", "origin", "dest"}

    # The logged model carries its preprocessing: raw validated rows in, probabilities out.
    model = mlflow.pyfunc.load_model(r["model_uri"])
    rows = pd.read_parquet(jan_root / catalog.validated_file("flights", "2013-01-28"))
    proba = model.predict(rows)
    assert proba.shape == (len(rows), 2) and ((proba >= 0) & (proba <= 1)).all()
    # The progress callback was for the fit only: the logged model does not carry it.
    assert mlflow.sklearn.load_model(r["model_uri"]).named_steps["model"].get_params()["callbacks"] is None


def test_train_cli_json(jan_root):
    import io
    from contextlib import redirect_stdout

    from pipelines.cli import main

    out = io.StringIO()
    with redirect_stdout(out):
        code = main(
            [
                "train",
                "--model",
                "flights_delay",
                "--end-ds",
                "2013-01-31",
                "--trigger",
                "drift",
                "--evidence",
                '{"report": "file:///x"}',
                "--json",
            ]
        )
    assert code == 0
    r = json.loads(out.getvalue())
    assert {"version", "run_id", "metrics", "fingerprint"} <= set(r) and r["trigger"] == "drift"


def test_rerun_reuses_the_version_unless_forced(jan_root):
    project = load_project("flights_delay")
    first = train_challenger(project, "2013-01-31")
    again = train_challenger(project, "2013-01-31", trigger="schedule")
    assert again["reused"] and again["version"] == first["version"] and again["run_id"] == first["run_id"]
    forced = train_challenger(project, "2013-01-31", force=True)
    assert not forced["reused"] and forced["version"] != first["version"]


def test_a_different_model_config_is_never_reused(jan_root, tmp_path, monkeypatch):
    import yaml

    from pipelines.core.settings import PROJECT_ROOT

    first = train_challenger(load_project("flights_delay"), "2013-01-31")
    d = tmp_path / "configs"
    shutil.copytree(PROJECT_ROOT / "configs", d)
    raw = yaml.safe_load((d / "flights_delay.yaml").read_text())
    raw["model"]["params"]["max_depth"] = 3
    (d / "flights_delay.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("PIPELINES_CONFIG_DIR", str(d))
    other = train_challenger(load_project("flights_delay"), "2013-01-31")
    assert not other["reused"] and other["version"] != first["version"]
