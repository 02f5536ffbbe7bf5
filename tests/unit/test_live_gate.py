"""Shadow lanes, the shadow set and the live gate's decision, as pure functions on made-up evidence."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from pipelines.core import catalog
from pipelines.core.errors import ConfigError
from pipelines.core.shadows import select
from pipelines.training.gate import shadow_route
from pipelines.training.live import judge


@pytest.fixture
def live_project(project):
    gate = project.gate.model_copy(
        update={
            "live": project.gate.live.model_copy(update={"min_days": 5, "window_days": 10, "samples": 300}),
            "slices": project.gate.slices.model_copy(update={"columns": ["origin"], "min_size": 100}),
        }
    )
    return project.model_copy(update={"gate": gate})


def _evidence(days: int, shadow_edge: float, rows: int = 400, seed: int = 1, slice_loss: bool = False) -> dict:
    """Paired days where the shadow's scores carry ``shadow_edge`` more signal than the champion's."""
    rng = np.random.default_rng(seed)
    frames, ys, a, b = [], [], [], []
    for d in range(days):
        y = rng.integers(0, 2, rows)
        noise = rng.normal(size=rows)
        origin = np.where(np.arange(rows) % 2 == 0, "EWR", "JFK")
        champion = y * 0.5 + noise
        shadow = y * (0.5 + shadow_edge) + noise
        if slice_loss:  # the shadow is much better on JFK and useless on EWR
            shadow = np.where(origin == "EWR", rng.normal(size=rows), y * 3.0 + noise)
        frames.append(pd.DataFrame({"origin": origin, "ds": f"2013-01-{d + 1:02d}"}))
        ys.append(y)
        a.append(1 / (1 + np.exp(-shadow)))  # probabilities: log loss and Brier are measured too
        b.append(1 / (1 + np.exp(-champion)))
    days_list = [f"2013-01-{d + 1:02d}" for d in range(days)]
    pooled = (pd.concat(frames, ignore_index=True), np.concatenate(ys), np.concatenate(a), np.concatenate(b))
    return {"days": days_list, "rows": rows * days, "_pooled": pooled if days else None}


def test_a_clearly_better_shadow_is_promoted_only_with_enough_days(live_project):
    early = judge(live_project, _evidence(4, 0.6), age_days=4)
    assert early["verdict"] == "wait" and early["why"] == "too few paired days"
    assert "live_days" in early["failed"]
    ready = judge(live_project, _evidence(5, 0.6), age_days=5)
    assert ready["verdict"] == "promote", ready["failed"]
    boot = next(c for c in ready["criteria"] if c["name"] == "live_bootstrap:roc_auc")
    assert boot["low"] > 0 and boot["days"] == 5


def test_a_clearly_worse_shadow_retires_and_an_indistinguishable_one_waits_then_ages_out(live_project):
    worse = judge(live_project, _evidence(6, -0.4), age_days=6)
    assert worse["verdict"] == "retire" and worse["why"].startswith("loses over the window")
    same = judge(live_project, _evidence(6, 0.0), age_days=6)
    assert same["verdict"] == "wait" and "live_bootstrap:roc_auc" in same["failed"]
    old = judge(live_project, _evidence(6, 0.0), age_days=live_project.shadow.max_age_days + 1)
    assert old["verdict"] == "retire" and "max_age_days" in old["why"]


def test_a_shadow_that_wins_overall_but_loses_a_slice_is_not_promoted(live_project):
    d = judge(live_project, _evidence(6, 0.0, slice_loss=True), age_days=6)
    boot = next(c for c in d["criteria"] if c["name"] == "live_bootstrap:roc_auc")
    assert boot["low"] > 0  # better overall, with confidence
    assert d["failed"] == ["live_slices:origin"] and d["verdict"] == "wait"


def test_no_paired_day_is_never_a_pass(live_project):
    d = judge(live_project, {"days": [], "rows": 0, "_pooled": None}, age_days=0)
    assert d["verdict"] == "wait" and set(d["failed"]) == {"live_days", "live_bootstrap:roc_auc"}


def _version(number: int, **tags: str) -> SimpleNamespace:
    return SimpleNamespace(version=str(number), run_id=f"run{number}", tags=tags)


def test_the_shadow_set_is_the_newest_named_versions_never_the_champion_a_rolled_back_or_an_ended_one():
    versions = [
        _version(1),
        _version(2, shadow="active", shadow_reason="drift challenger"),
        _version(3, shadow="retired"),
        _version(4),
        _version(5, shadow="active"),
        _version(6, shadow="promoted"),
        _version(7),
    ]
    got = select(versions, champion="5", alias="4", configured=["3", "1", "99"], rolled_back={"1"}, limit=8)
    # 5 is the champion, 3 retired (the record wins over the config), 1 rolled back, 99 unregistered.
    assert [(s.version, s.source) for s in got] == [("4", "alias"), ("2", "registry")]
    assert got[1].reason == "drift challenger"
    assert [s.version for s in select(versions, None, "4", ["7"], set(), limit=2)] == ["7", "5"]
    assert select(versions, None, None, [], set(), limit=0) == []


def test_shadow_lanes_have_their_own_keys_and_locks_and_refuse_what_is_not_a_version():
    lane = catalog.Lane("flights_delay", "3")
    assert catalog.scores_file(lane, "2013-01-02") == "shadow/flights_delay/v=3/ds=2013-01-02/part-00000.parquet"
    assert catalog.scoring_plan(lane, "2013-01-02") == "checkpoints/flights_delay/v=3/ds=2013-01-02/plan.json"
    assert catalog.scores_file("flights_delay", "2013-01-02") == "scores/flights_delay/ds=2013-01-02/part-00000.parquet"
    assert catalog.shadow_glob("flights_delay") == "shadow/flights_delay/v=*/ds=*/*.parquet"
    for bad in ("0", "-1", "3/..", "..", "v3", "", True, 1.5, "1" * 11):
        with pytest.raises(ConfigError):
            catalog.Lane("flights_delay", bad)
    with pytest.raises(ConfigError):
        catalog.version_number(None)
    assert (
        catalog.Lane("flights_delay", " 12")
        == catalog.Lane("flights_delay", 12)
        == catalog.Lane("flights_delay", "012")
    )
    assert catalog.scores_file(catalog.Lane("m", 12), "2013-01-02").startswith("shadow/m/v=12/")


def test_shadow_lanes_are_listed_from_what_is_published(storage):
    for key in (
        catalog.scores_manifest(catalog.Lane("m", "2"), "2013-01-02"),
        catalog.scores_file(catalog.Lane("m", "10"), "2013-01-02"),
        catalog.scores_manifest(catalog.Lane("m", "3"), "2013-01-03"),
        "shadow/m/v=x/ds=2013-01-02/_manifest.json",  # foreign: ignored
    ):
        storage.write_bytes(key, b"{}")
    assert catalog.shadow_lanes(storage, "m", "2013-01-02") == [catalog.Lane("m", "2"), catalog.Lane("m", "10")]
    assert [lane.shadow for lane in catalog.shadow_lanes(storage, "m")] == ["2", "3", "10"]
    assert catalog.shadow_partitions(storage, catalog.Lane("m", "3")) == ["2013-01-03"]


def _decision(passed: bool, failed: list[str], mean: float = 0.01, champion: str | None = "1") -> dict:
    return {
        "champion": champion,
        "passed": passed,
        "failed": failed,
        "criteria": [{"name": "bootstrap:roc_auc", "mean": mean}],
    }


def _with(project, promotion="holdout", **shadow):
    return project.model_copy(
        update={
            "gate": project.gate.model_copy(update={"promotion": promotion}),
            "shadow": project.shadow.model_copy(update=shadow),
        }
    )


def test_the_retrain_gate_routes_a_challenger_to_shadow_only_as_configured(project):
    passed, near = _decision(True, []), _decision(False, ["min_change:roc_auc", "bootstrap:roc_auc"])
    assert shadow_route(_with(project, drift_challenger="promote"), passed, "drift") is None  # promoted at once
    assert shadow_route(_with(project, drift_challenger="shadow"), passed, "drift").startswith("drift challenger")
    assert shadow_route(_with(project, drift_challenger="shadow"), passed, "schedule") is None
    assert shadow_route(_with(project, "both"), passed, None).startswith("gate.promotion both")
    assert shadow_route(_with(project, "both"), near, None) is None
    assert shadow_route(_with(project, "live"), near, None).startswith("gate.promotion live")
    assert shadow_route(_with(project, "live"), _decision(False, ["floor:roc_auc"]), None) is None
    assert shadow_route(project, near, "drift") is None  # holdout: a rejection is a rejection
    # Never without a champion (a first champion is promoted on its floors), never with no room for shadows.
    assert shadow_route(_with(project, "live"), _decision(True, [], champion=None), None) is None
    assert shadow_route(_with(project, "live", max_versions=0), passed, None) is None


def test_a_look_is_spent_only_on_a_decision_and_the_interval_is_widened_for_few_days(live_project):
    few = judge(live_project, _evidence(4, 0.6), age_days=7)  # a look is due, but 4 paired days decide nothing
    assert few["look"] is False and few["verdict"] == "wait"
    ready = judge(live_project, _evidence(6, 0.6), age_days=7)
    assert ready["look"] is True and ready["verdict"] == "promote"
    boot = next(c for c in ready["criteria"] if c["name"] == "live_bootstrap:roc_auc")
    assert boot["expansion"] > 1.5  # t(5) over z, at the confidence split over 6 looks
    assert boot["confidence"] == pytest.approx(1 - 0.05 / 6)
    spent = judge(live_project, _evidence(6, 0.6), age_days=7, looks_taken=1)  # this age's look was taken
    assert spent["look"] is False and spent["verdict"] == "wait" and spent["why"].startswith("no look today")
    done = judge(live_project, _evidence(6, 0.6), age_days=30, looks_taken=6)  # every planned look spent
    assert done["look"] is False and done["verdict"] == "wait"
