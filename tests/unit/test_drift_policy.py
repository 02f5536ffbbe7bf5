"""The drift policy as pure functions: what is monitored, when a partition signals, when the policy fires."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.core.config import DriftConfig, load_project
from pipelines.core.errors import ConfigError
from pipelines.core.features import feature_spec
from pipelines.monitoring.measure import monitored_columns, performance
from pipelines.monitoring.policy import decide, signal


def _project(**drift):
    p = load_project("flights_delay")
    return p.model_copy(update={"drift": DriftConfig(**drift)})


def _sig(on: bool) -> dict:
    return {"signal": on, "reasons": ["drift_share 0.3 >= 0.1 (dest)"] if on else []}


def test_calendar_features_are_left_out_by_default():
    p = load_project("flights_delay")
    cols = monitored_columns(p, feature_spec(p))
    assert "day_of_week" not in cols
    assert set(cols) == {"distance", "hour", "sched_dep_minutes", "sched_arr_minutes", "carrier", "origin", "dest"}
    chosen = _project(columns=["dest", "day_of_week"], exclude=["day_of_week"])
    assert monitored_columns(chosen, feature_spec(chosen)) == ["dest"]
    with pytest.raises(ConfigError, match="not model features"):
        bad = _project(columns=["arr_delay"])
        monitored_columns(bad, feature_spec(bad))


def test_partition_signals_on_drift_share_or_decay_but_not_when_small():
    p = _project(drift_share=0.25, performance_decay={"log_loss": {"absolute": 0.1}}, min_rows=100)
    quiet = {"drift_share": 0.14, "drifted_features": ["dest"]}
    assert signal(p, 900, quiet, {"decayed": []}) == {"signal": False, "reasons": []}
    drifted = {"drift_share": 0.29, "drifted_features": ["dest", "sched_arr_minutes"]}
    s = signal(p, 900, drifted, {"decayed": []})
    assert s["signal"] and "dest, sched_arr_minutes" in s["reasons"][0]
    perf = {
        "decayed": ["log_loss"],
        "metrics": {"log_loss": {"value": 0.9, "baseline": 0.6, "decay": 0.3, "allowed_decay": 0.1}},
    }
    assert signal(p, 900, quiet, perf)["signal"]
    small = signal(p, 50, drifted, perf)
    assert not small["signal"] and "min_rows" in small["reasons"][0]


def test_performance_decay_respects_each_metrics_direction():
    p = _project(performance_decay={"log_loss": {"absolute": 0.1}, "roc_auc": {"relative": 0.1}})
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 2000).astype(float)
    good = np.clip(y * 0.6 + rng.random(2000) * 0.4, 0.01, 0.99)
    baseline = {"log_loss": 0.6, "roc_auc": 0.65, "holdout_positive_share": 0.3}
    ok = performance(p, y, good, baseline)
    assert ok["decayed"] == []  # better than the baseline on both
    assert ok["metrics"]["roc_auc"]["decay"] < 0 and ok["metrics"]["log_loss"]["decay"] < 0
    assert ok["metrics"]["positive_share"]["baseline"] == 0.3
    noise = rng.random(2000)
    bad = performance(p, y, noise, baseline)
    assert set(bad["decayed"]) == {"roc_auc", "log_loss"}
    assert bad["metrics"]["roc_auc"]["allowed_decay"] == pytest.approx(0.065)


def test_hysteresis_needs_consecutive_signals():
    cfg = DriftConfig(consecutive=3, cooldown_days=0)
    two = decide(
        cfg,
        "2013-07-03",
        current=_sig(True),
        history=[("2013-07-01", False), ("2013-07-02", True)],
        last_retraining=None,
        last_fired=None,
    )
    assert not two["fired"] and "2 partition(s) in a row, 3 required" in two["reason"]
    three = decide(
        cfg,
        "2013-07-03",
        current=_sig(True),
        history=[("2013-07-01", True), ("2013-07-02", True)],
        last_retraining=None,
        last_fired=None,
    )
    assert three["fired"] and three["streak"] == 3
    assert three["history"] == [{"ds": "2013-07-01", "signal": True}, {"ds": "2013-07-02", "signal": True}]
    none = decide(
        cfg,
        "2013-07-03",
        current=_sig(False),
        history=[("2013-07-01", True), ("2013-07-02", True)],
        last_retraining=None,
        last_fired=None,
    )
    assert not none["fired"] and none["reason"].startswith("no signal")


def test_cooldown_counts_retrainings_and_firings_in_partition_days():
    cfg = DriftConfig(consecutive=1, cooldown_days=14)
    kw = {"current": _sig(True), "history": []}
    recent = decide(cfg, "2013-07-10", **kw, last_retraining="2013-07-01", last_fired=None)
    assert not recent["fired"] and "cooldown: last retraining on 2013-07-01, 9 < 14" in recent["reason"]
    fired = decide(cfg, "2013-07-10", **kw, last_retraining="2013-01-31", last_fired="2013-07-05")
    assert not fired["fired"] and "last firing on 2013-07-05" in fired["reason"]
    later = decide(cfg, "2013-07-19", **kw, last_retraining="2013-07-01", last_fired="2013-07-05")
    assert later["fired"] and later["days_since_last"] == 14
    # A retraining on later data (a backfill) does not put an earlier partition in cooldown.
    past = decide(cfg, "2013-02-10", **kw, last_retraining="2013-07-31", last_fired=None)
    assert past["fired"]
