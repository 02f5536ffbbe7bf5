"""The model card of each registered version: its figures are its run's, its gate's and its live days'.

Real models trained on validated January 2013 with a real MLflow store. The
oracles are read straight from MLflow (the run's metrics and tags, the
decision artifact, the metric history), never from the card module.
"""

from __future__ import annotations

import json
import shutil
import time

import mlflow
import pytest
import yaml

from pipelines.core import catalog
from pipelines.core.config import load_project
from pipelines.core.errors import GateRejected
from pipelines.core.partitions import metric_step
from pipelines.core.settings import PROJECT_ROOT
from pipelines.core.tracking import client
from pipelines.training.card import STATUS_TAG, URI_TAG, card_data, render_html, render_markdown
from pipelines.training.gate import rollback, run_gate
from pipelines.training.train import train_challenger

MODEL = "flights_delay"


@pytest.fixture
def configs(tmp_path, monkeypatch):
    """Two configs of the project: ``full`` (fewer trees, for time) and ``weak`` (distance only)."""

    def use(kind: str):
        d = tmp_path / kind
        if not d.exists():
            shutil.copytree(PROJECT_ROOT / "configs", d)
            raw = yaml.safe_load((d / f"{MODEL}.yaml").read_text())
            raw["model"]["params"]["n_estimators"] = 80
            if kind == "weak":
                raw["features"] = {"numeric": ["distance"], "categorical": [], "derived": []}
            (d / f"{MODEL}.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
        monkeypatch.setenv("PIPELINES_CONFIG_DIR", str(d))
        return load_project(MODEL)

    return use


def _cli(capsys, *args: str) -> tuple[int, str]:
    from pipelines.cli import main

    capsys.readouterr()
    code = main(list(args))
    return code, capsys.readouterr().out


def test_each_card_says_what_its_run_its_gate_and_its_live_days_say(jan_root, january, configs, capsys):
    weak = configs("weak")
    v1 = train_challenger(weak, "2013-01-31")["version"]
    c = client()
    assert c.get_model_version(MODEL, v1).tags[STATUS_TAG] == "registered, not yet gated"
    run_gate(weak)
    full = configs("full")
    v2 = train_challenger(full, "2013-01-31")["version"]
    assert run_gate(full)["promoted"]

    # Statuses moved, and the cards with them (logged on each version's run).
    tags = {v: c.get_model_version(MODEL, v).tags for v in (v1, v2)}
    assert tags[v2][STATUS_TAG] == "champion" and tags[v1][STATUS_TAG] == "previous champion"
    logged = mlflow.artifacts.load_text(tags[v2][URI_TAG])
    assert logged.startswith(f"# Model card: {MODEL} v{v2} (champion)")
    html = mlflow.artifacts.load_text(tags[v2][URI_TAG].replace(catalog.MODEL_CARD_MD, catalog.MODEL_CARD_HTML))
    assert html.startswith("<!doctype html>") and "<table>" in html
    # A retried gate, as after a try that moved the alias and died before the cards: they catch up.
    c.set_model_version_tag(MODEL, v2, STATUS_TAG, "passed the gate, not promoted")
    assert run_gate(full)["noop"]
    assert c.get_model_version(MODEL, v2).tags[STATUS_TAG] == "champion"

    # The live days: drift checks as champion log them on its run.
    from pipelines.monitoring.drift import run_drift

    shutil.copytree(january / catalog.validation_reports("flights"), jan_root / catalog.validation_reports("flights"))
    for ds in ("2013-01-29", "2013-01-30", "2013-01-31"):
        run_drift(full, ds)
    mv = c.get_model_version(MODEL, v2)
    # A day checked again: its latest figures count, whatever their size.
    for value in (0.9, 0.1):
        time.sleep(0.01)
        c.log_metric(mv.run_id, "live_drift_share", value, int(time.time() * 1000), metric_step("2013-01-31"))

    d = card_data(full, v2)
    run = c.get_run(mv.run_id)
    assert d["live"]["series"][-1]["ds"] == "2013-01-31" and d["live"]["series"][-1]["live_drift_share"] == 0.1
    # Days it was trained and tested on, checked after the fact: in-sample, marked, not in the live mean.
    first, last = run.data.tags["training_window"].split("..")[0], run.data.tags["holdout_window"].split("..")[1]
    assert d["live"]["seen_window"] == f"{first}..{last}" and last == "2013-01-31"
    assert d["live"]["seen_days"] == ["2013-01-29", "2013-01-30", "2013-01-31"] and d["live"]["mean"] is None
    assert any("in-sample" in x for x in d["limitations"])
    # Training: the run's tags and parameters.
    t = d["training"]
    assert t["window"] == run.data.tags["training_window"] and t["holdout_window"] == run.data.tags["holdout_window"]
    assert t["data_fingerprint"] == run.data.tags["data_fingerprint"]
    assert t["contract_version"] == run.data.tags["contract_version"] == "1.0.0"
    assert t["train_rows"] == int(run.data.params["train_rows"]) and t["estimator"] == "XGBClassifier"
    # Holdout: the run's metrics, each inside its interval.
    for name in ("roc_auc", "pr_auc", "log_loss", "brier"):
        m = d["holdout"]["metrics"][name]
        assert m["value"] == run.data.metrics[f"holdout_{name}"]
        assert m["low"] <= m["value"] <= m["high"] and m["low"] < m["high"]
    assert d["holdout"]["confidence"] == full.gate.bootstrap.confidence
    # Slices and importance: the evaluation logged with the run.
    evaluation = mlflow.artifacts.load_dict(f"runs:/{mv.run_id}/{catalog.EVALUATION}")
    assert d["slices"] == evaluation["slices"] and [s["column"] for s in d["slices"]] == ["origin", "carrier"]
    origins = {v["value"]: v for v in d["slices"][0]["values"]}
    assert set(origins) == {"EWR", "JFK", "LGA"} and all("metrics" in v for v in origins.values())
    assert sum(v["rows"] for v in origins.values()) == t["holdout_rows"]
    importance = [f["feature"] for f in d["importance"]["features"]]
    assert d["importance"]["method"] == "tree_shap" and sorted(importance) == sorted(t["features"])
    # The gate: each criterion of the decision artifact, as decided.
    decision = mlflow.artifacts.load_dict(f"runs:/{mv.run_id}/{catalog.GATE_DECISION}")
    assert d["gate"]["passed"] is True and d["gate"]["champion"] == v1
    assert [(k["name"], k["passed"]) for k in d["gate"]["criteria"]] == [
        (k["name"], k["passed"]) for k in decision["criteria"]
    ]
    boot = next(k for k in d["gate"]["criteria"] if k["name"] == "bootstrap:roc_auc")
    raw = next(k for k in decision["criteria"] if k["name"] == "bootstrap:roc_auc")
    assert {k: boot["figures"][k] for k in ("low", "high")} == {k: raw[k] for k in ("low", "high")}
    # Live: the metric history on its run, day by day.
    history = {m.step: m.value for m in c.get_metric_history(mv.run_id, "live_drift_share")}
    assert d["live"]["days"] == len(history) == 3
    assert [r["live_drift_share"] for r in d["live"]["series"]] == [history[s] for s in sorted(history)]
    assert d["live"]["since"] == "2013-01-29" and d["live"]["until"] == "2013-01-31"
    assert d["limitations"][: len(full.card.limitations)] == full.card.limitations
    assert d["purpose"]["intended_use"] == full.card.intended_use and d["purpose"]["owner"] == full.owner

    # Rendered: the figures as the card shows them.
    md = render_markdown(d)
    auc = d["holdout"]["metrics"]["roc_auc"]
    assert f"| roc_auc | {auc['value']:.4f} | [{auc['low']:.4f}, {auc['high']:.4f}] |" in md
    assert "| bootstrap:roc_auc | pass |" in md and f"Against champion {v1}: **passed**" in md
    assert "| 2013-01-31 (in-sample) |" in md
    assert "<script" not in render_html(d)
    # Free text and data values cannot forge lines or cells; an undated (pre-history) alias move renders.
    slices = [{**d["slices"][0], "values": [{**d["slices"][0]["values"][0], "value": "EWR | 1 | 2"}]}]
    undated = {"event": "promote", "champion": v2, "previous": None, "why": "legacy\n## Forged", "at": None}
    forged = {**d, "limitations": ["one\n## Forged\n- forged item"], "slices": slices, "history": [undated]}
    md2, html2 = render_markdown(forged), render_html(forged)
    assert "\n## Forged" not in md2 and "\n- forged item" not in md2 and "date not recorded: promote" in md2
    assert "<td>EWR | 1 | 2</td>" in html2 and "<h2>Forged" not in html2

    # The CLI renders it (Markdown, HTML to a file, JSON); an unknown version exits 5.
    code, out = _cli(capsys, "card", "--model", MODEL, "--version", v2)

    def undated(card: str) -> list[str]:  # rendered a second later, it says so
        return [line for line in card.splitlines() if not line.startswith("- **Card generated:**")]

    assert code == 0 and undated(out) == undated(md) and len(undated(md)) == len(md.splitlines()) - 1
    code, out = _cli(capsys, "card", "--model", MODEL, "--version", v2, "--json")
    assert code == 0 and json.loads(out)["holdout"]["metrics"]["roc_auc"]["value"] == auc["value"]
    code, _ = _cli(capsys, "card", "--model", MODEL, "--version", "99")
    assert code == 5

    # A rejected challenger's card names the failed criteria; a rollback re-cards both versions.
    v3 = train_challenger(weak, "2013-01-31", force=True)["version"]
    with pytest.raises(GateRejected):
        run_gate(weak)
    d3 = card_data(weak, v3)
    assert d3["status"] == "rejected by the gate" and not d3["gate"]["passed"] and d3["gate"]["failed"]
    assert d3["live"] is None and "Never champion." in render_markdown(d3)
    rollback(full, "test: cards follow")
    assert c.get_model_version(MODEL, v2).tags[STATUS_TAG] == "rolled back"
    assert c.get_model_version(MODEL, v1).tags[STATUS_TAG] == "champion"


def test_a_card_that_cannot_be_written_never_fails_the_gate(jan_root, configs, monkeypatch, caplog):
    import pipelines.training.card as card

    full = configs("full")
    v = train_challenger(full, "2013-01-31")["version"]

    def broken(*a, **k):
        raise RuntimeError("artifact store down")

    monkeypatch.setattr(card, "card_data", broken)
    assert run_gate(full)["promoted"]
    assert "model card could not be written" in caplog.text
    assert str(client().get_model_version_by_alias(MODEL, "champion").version) == v
