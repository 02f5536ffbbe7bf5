"""The gate on real trained models: better is promoted, worse and indistinguishable are not.

Each test trains with the real pipeline and a real (SQLite + file) MLflow
store on validated January 2013 data.
"""

from __future__ import annotations

import logging
import shutil
import threading

import numpy as np
import pandas as pd
import pytest
import yaml

from pipelines.core.config import load_project
from pipelines.core.errors import GateRejected
from pipelines.core.metrics import METRICS
from pipelines.core.settings import PROJECT_ROOT
from pipelines.core.tracking import CHAMPION, PREVIOUS, client
from pipelines.training.gate import ChampionChanged, _move_aliases, rollback, run_gate, slice_criterion
from pipelines.training.train import train_challenger


@pytest.fixture
def weak_config(tmp_path, monkeypatch):
    """Same model name, one weak feature: a config dir that PIPELINES_CONFIG_DIR points to."""

    def use(weak: bool) -> None:
        d = tmp_path / ("weak" if weak else "full")
        if not d.exists():
            shutil.copytree(PROJECT_ROOT / "configs", d)
            if weak:
                raw = yaml.safe_load((d / "flights_delay.yaml").read_text())
                raw["features"] = {"numeric": ["distance"], "categorical": [], "derived": []}
                (d / "flights_delay.yaml").write_text(yaml.safe_dump(raw))
        monkeypatch.setenv("PIPELINES_CONFIG_DIR", str(d))

    return use


def aliases():
    c = client()
    out = {}
    for alias in (CHAMPION, PREVIOUS):
        try:
            out[alias] = str(c.get_model_version_by_alias("flights_delay", alias).version)
        except Exception:
            out[alias] = None
    return out


def test_first_model_promoted_on_floors_then_weak_one_rejected(jan_root, weak_config, caplog):
    project = load_project("flights_delay")
    first = train_challenger(project, "2013-01-31")
    mlflow_log = logging.getLogger("mlflow")  # does not propagate: listen to it directly
    mlflow_log.addHandler(caplog.handler)
    try:
        with caplog.at_level("INFO", logger="pipelines"):
            d = run_gate(project)
    finally:
        mlflow_log.removeHandler(caplog.handler)
    assert d["promoted"] and [c["name"] for c in d["criteria"]] == ["holdout_size", "floor:roc_auc"]
    # The task log names each criterion with its figures, then the decision.
    value = round(d["criteria"][1]["value"], 5)
    assert f'floor:roc_auc pass {{"value": {value}, "bound": 0.58, "direction": ">="}}' in caplog.text
    assert "PROMOTED; decision runs:/" in caplog.text
    assert "not defined in the model signature" not in caplog.text  # only the signature's columns are passed
    assert aliases() == {CHAMPION: first["version"], PREVIOUS: None}

    weak_config(True)
    weak = load_project("flights_delay")
    w = train_challenger(weak, "2013-01-31")
    with pytest.raises(GateRejected) as exc:
        run_gate(weak)
    decision = exc.value.decision
    assert "floor:roc_auc" in decision["failed"] or "min_change:roc_auc" in decision["failed"]
    assert "bootstrap:roc_auc" in decision["failed"]
    assert aliases() == {CHAMPION: first["version"], PREVIOUS: None}  # nothing moved
    mv = client().get_model_version("flights_delay", w["version"])
    assert mv.tags["gate_decision"] == "rejected" and "bootstrap:roc_auc" in mv.tags["gate_failed"]


def test_better_model_promoted_indistinguishable_kept_and_rollback(jan_root, weak_config):
    weak_config(True)
    weak = load_project("flights_delay")
    v_weak = train_challenger(weak, "2013-01-31")["version"]
    run_gate(weak)
    assert aliases()[CHAMPION] == v_weak

    weak_config(False)
    full = load_project("flights_delay")
    v_full = train_challenger(full, "2013-01-31")["version"]
    d = run_gate(full)
    assert d["promoted"] and not d["failed"]
    assert {c["name"] for c in d["criteria"]} >= {"bootstrap:roc_auc", "slices:origin", "slices:carrier"}
    assert aliases() == {CHAMPION: v_full, PREVIOUS: v_weak}
    assert client().get_model_version("flights_delay", v_full).tags["promoted_from"] == v_weak

    # The same data and seed again: indistinguishable, the champion stays.
    v_same = train_challenger(full, "2013-01-31", force=True)["version"]
    with pytest.raises(GateRejected) as exc:
        run_gate(full)
    assert "min_change:roc_auc" in exc.value.decision["failed"]
    assert aliases() == {CHAMPION: v_full, PREVIOUS: v_weak}
    assert v_same != v_full

    from pipelines.cli import main

    assert main(["rollback", "--model", "flights_delay", "--reason", "test: bad scores reported"]) == 0
    assert aliases() == {CHAMPION: v_weak, PREVIOUS: v_full}
    record = client().get_registered_model("flights_delay").tags["last_alias_change"]
    assert "rollback: test: bad scores reported" in record
    r = rollback(full, "roll forward again")
    assert r["champion"] == v_full and aliases() == {CHAMPION: v_full, PREVIOUS: v_weak}


def test_racing_promotions_leave_one_consistent_champion(jan_root):
    project = load_project("flights_delay")
    v1 = train_challenger(project, "2013-01-31")["version"]
    c = client()
    c.create_model_version("flights_delay", f"models:/flights_delay/{v1}", run_id=None)
    c.create_model_version("flights_delay", f"models:/flights_delay/{v1}", run_id=None)
    results: dict[str, object] = {}

    def promote(version: str) -> None:
        try:
            _move_aliases(client(), project, version, None, f"race {version}")
            results[version] = "won"
        except ChampionChanged as exc:
            results[version] = exc

    threads = [threading.Thread(target=promote, args=(v,)) for v in ("2", "3")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [v for v, r in results.items() if r == "won"]
    assert len(winners) == 1
    assert aliases() == {CHAMPION: winners[0], PREVIOUS: None}


def test_slice_regression_blocks_promotion():
    """A challenger better overall but worse on one slice fails the slice criterion."""
    rng = np.random.default_rng(0)
    n = 3000
    rows = pd.DataFrame({"origin": np.repeat(["EWR", "JFK", "LGA"], n // 3)})
    y = rng.integers(0, 2, n).astype(float)
    noise = rng.normal(0, 1, n)
    champion = y + noise * 1.0
    challenger = y + noise * 0.5  # better everywhere...
    lga = (rows["origin"] == "LGA").to_numpy()
    challenger[lga] = rng.normal(0, 1, lga.sum())  # ...except LGA, where it is noise
    metric = METRICS["roc_auc"]
    overall = metric.gain(metric.fn(y, challenger), metric.fn(y, champion))
    from pipelines.core.config import SlicesConfig

    crit = slice_criterion(rows, "origin", y, challenger, champion, metric, SlicesConfig(min_size=200, tolerance=0.02))
    assert overall > 0 and not crit["passed"]
    assert min(crit["slices"], key=lambda s: s["gain"])["value"] == "LGA"
