"""The gate's promises, tried as an adversary would: only a version that won the gate is ever champion or
pinned, a rolled-back version stays out, every candidate is judged on its own holdout, and no input ends in
a traceback.

Each test trains with the real pipeline and a real (SQLite + file) MLflow store on validated January 2013.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import yaml

from pipelines.core import catalog
from pipelines.core.config import load_project
from pipelines.core.errors import GateRejected, NoChampion
from pipelines.core.settings import PROJECT_ROOT
from pipelines.core.storage import get_storage
from pipelines.core.tracking import CHAMPION, alias_version, client
from pipelines.scoring.pin import pin_model
from pipelines.training import gate
from pipelines.training.gate import ChampionChanged, run_gate
from pipelines.training.train import train_challenger

# Names that did not exist before these promises were kept are imported where used, after the
# behaviour they guard has been checked, so that on the code before, each test fails on its behaviour.

MODEL = "flights_delay"


@pytest.fixture
def configure(tmp_path, monkeypatch):
    """``configure(name, edit)``: a config dir with ``edit(raw_config)`` applied, made current."""

    def use(name: str, edit=None) -> None:
        d = tmp_path / f"configs-{name}"
        if not d.exists():
            shutil.copytree(PROJECT_ROOT / "configs", d)
            if edit is not None:
                raw = yaml.safe_load((d / f"{MODEL}.yaml").read_text())
                edit(raw)
                (d / f"{MODEL}.yaml").write_text(yaml.safe_dump(raw))
        monkeypatch.setenv("PIPELINES_CONFIG_DIR", str(d))

    return use


def weak(raw: dict) -> None:
    raw["features"] = {"numeric": ["distance"], "categorical": [], "derived": []}


def champion() -> str | None:
    mv = alias_version(client(), MODEL, CHAMPION)
    return None if mv is None else str(mv.version)


def test_a_dry_run_records_nothing_and_a_backfill_never_pins_what_only_passed_a_dry_run(jan_root):
    project = load_project(MODEL)
    v1 = train_challenger(project, "2013-01-31")["version"]

    d = run_gate(project, dry_run=True)
    assert d["passed"] and not d["promoted"]
    tags = client().get_model_version(MODEL, v1).tags
    assert not {"gate_decision", "promoted_from", "gate_decision_uri"} & set(tags)  # nothing recorded
    assert d["dry_run"]
    from pipelines.core.champions import history

    assert champion() is None and history(client(), MODEL) == []
    with pytest.raises(NoChampion):  # a backfill as of a later day: v1 was never champion
        pin_model(project, "2013-02-15", "as_of_partition")

    run_gate(project)
    assert champion() == v1
    assert pin_model(project, "2013-02-15", "as_of_partition").version == v1
    [entry] = history(client(), MODEL)
    assert (entry["event"], entry["champion"], entry["previous"]) == ("promote", v1, None)
    assert entry["decision_uri"] == client().get_model_version(MODEL, v1).tags["gate_decision_uri"]


def test_a_promotion_that_loses_the_race_is_never_recorded_as_promoted(jan_root, monkeypatch):
    project = load_project(MODEL)
    trained = train_challenger(project, "2013-01-31")
    c = client()
    rival = c.create_model_version(MODEL, f"models:/{MODEL}/{trained['version']}", run_id=trained["run_id"])
    for k, v in c.get_model_version(MODEL, trained["version"]).tags.items():
        c.set_model_version_tag(MODEL, rival.version, k, v)
    real = gate.evaluate_gate

    def evaluate_while_another_gate_wins(*args, **kwargs):
        d = real(*args, **kwargs)
        gate._move_aliases(client(), project, str(rival.version), None, "the other gate won")
        return d

    monkeypatch.setattr(gate, "evaluate_gate", evaluate_while_another_gate_wins)
    with pytest.raises(ChampionChanged):
        run_gate(project, trained["version"])
    assert champion() == str(rival.version)
    assert c.get_model_version(MODEL, trained["version"]).tags["gate_decision"] == "superseded"
    from pipelines.core.champions import history

    assert [e["champion"] for e in history(c, MODEL)] == [str(rival.version)]
    monkeypatch.setattr(gate, "evaluate_gate", real)
    assert pin_model(project, "2013-02-15", "as_of_partition").version == str(rival.version)


def test_a_rolled_back_version_and_its_twin_are_refused_unless_forced(jan_root, configure):
    configure("weak", weak)
    v_weak = train_challenger(load_project(MODEL), "2013-01-31")["version"]
    run_gate(load_project(MODEL))
    configure("full")
    full = load_project(MODEL)
    v_full = train_challenger(full, "2013-01-31")["version"]
    run_gate(full)
    assert champion() == v_full

    gate.rollback(full, "bad scores reported")
    assert champion() == v_weak
    with pytest.raises(GateRejected) as exc:
        run_gate(full, v_full)
    assert exc.value.decision["failed"] == ["not_rolled_back"] and champion() == v_weak
    # Both windows end on 01-31 and ties go to the newer version: only the rollback keeps v_full out.
    assert pin_model(full, "2013-02-15", "as_of_partition").version == v_weak
    from pipelines.core.champions import history, rolled_back

    assert rolled_back(history(client(), MODEL)) == {v_full: "rollback: bad scores reported"}

    again = train_challenger(full, "2013-01-31")  # the same data, code and config: not the rolled-back version
    assert not again["reused"] and again["version"] not in (v_full, v_weak)
    with pytest.raises(GateRejected) as exc:
        run_gate(full, again["version"])
    assert exc.value.decision["failed"] == ["not_rolled_back"]
    assert f"as v{v_full}, which was rolled back" in exc.value.decision["criteria"][0]["detail"]

    d = run_gate(full, v_full, force=True)  # a scientist who knows why
    assert d["promoted"] and champion() == v_full and rolled_back(history(client(), MODEL)) == {}


def test_each_candidate_is_gated_on_its_own_holdout_whatever_trained_later(jan_root, configure):
    configure("seven")
    seven = train_challenger(load_project(MODEL), "2013-01-31")
    configure("fourteen", lambda raw: raw["training"].update(holdout_days=14))
    fourteen = train_challenger(load_project(MODEL), "2013-01-31")  # same end date: the window's folder is replaced
    assert fourteen["holdout_days"] == ["2013-01-18", "2013-01-31"]

    configure("seven")
    project = load_project(MODEL)
    d = gate.evaluate_gate(project, seven["version"])
    assert d["holdout_days"] == [f"2013-01-{day}" for day in range(25, 32)]  # its own 7, not the later 14

    from pipelines.training.gate import HoldoutChanged

    storage = get_storage()
    digest = client().get_model_version(MODEL, seven["version"]).tags["holdout_md5"]
    snapshot = catalog.holdout_snapshot(MODEL, digest)
    storage.write_bytes(snapshot, storage.read_bytes(catalog.training_file(MODEL, "2013-01-31", "holdout.parquet")))
    with pytest.raises(HoldoutChanged, match="not the one the version was trained with"):
        gate.evaluate_gate(project, seven["version"])


def test_a_holdout_too_small_to_judge_is_a_rejection_not_a_crash(jan_root, configure):
    configure("strict", lambda raw: raw["gate"].update(min_holdout_rows=10**6, min_class_rows=10**5))
    project = load_project(MODEL)
    version = train_challenger(project, "2013-01-31")["version"]
    from pipelines.cli import main

    assert main(["gate", "--model", MODEL]) == GateRejected.exit_code
    tags = client().get_model_version(MODEL, version).tags
    assert tags["gate_decision"] == "rejected" and tags["gate_failed"] == "holdout_size"
    assert champion() is None

    # Each model gets its own columns: an integer feature read back as float with a null, extra columns,
    # and a column the model needs that the rows lack (a named outcome, not MLflow's schema traceback).
    rows = catalog.read_validated(get_storage(), "flights", "2013-01-31")
    rows["hour"] = rows["hour"].astype("float64")
    rows.loc[0, "hour"] = np.nan
    rows["not_a_feature"] = 1
    scores, missing = gate._holdout_scores(f"models:/{MODEL}/{version}", rows, "classification")
    assert missing == [] and len(scores) == len(rows) and np.isfinite(scores).all()
    scores, missing = gate._holdout_scores(
        f"models:/{MODEL}/{version}", rows.drop(columns=["carrier"]), "classification"
    )
    assert scores is None and missing == ["carrier"]
