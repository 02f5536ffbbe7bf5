"""The pure decisions at the heart of each step, tried on hand-made inputs without any I/O.

- ``ingest.decision.decide``: publish, quarantine or halt a partition;
- ``training.gate.judge``: whether a challenger beats the champion;
- ``scoring.pin.as_of``: which version was champion on a day.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from pipelines.core.contracts import (
    DELIVERY_INCOMPLETE,
    EMPTY_FILE,
    MALFORMED_ROW,
    MISSING_COLUMN,
    QUARANTINE_RATE,
    TYPE_MISMATCH,
    UNSAFE_FILE_NAME,
    Column,
    Contract,
    Rule,
)
from pipelines.ingest.decision import Tally, decide, gx_agrees

# ---- the validation decision


def contract(max_rate: float = 0.05) -> Contract:
    return Contract(
        id="t",
        name="t",
        version="1.0.0",
        columns=(Column("a", "integer"), Column("b", "string")),
        rules=(
            Rule("a_range", "range", "error", "quarantine", ("a",), {"min": 0, "max": 10}),
            Rule("b_known", "in_set", "warning", "warn", ("b",), {"values": ["x"]}),
            Rule("a_required", "not_null", "critical", "halt", ("a",)),
            Rule("rows", "row_count", "critical", "halt", (), {"min": 1, "max": 1000}),
        ),
        max_quarantine_rate=max_rate,
        severity_actions={"critical": "halt", "error": "quarantine", "warning": "warn"},
        source="t.yaml",
        type_mismatch_rule=Rule(TYPE_MISMATCH, TYPE_MISMATCH, "error", "quarantine"),
        missing_column_rule=Rule(MISSING_COLUMN, MISSING_COLUMN, "error", "quarantine"),
        malformed_row_rule=Rule(MALFORMED_ROW, MALFORMED_ROW, "error", "quarantine"),
        empty_file_rule=Rule(EMPTY_FILE, EMPTY_FILE, "critical", "halt"),
        incomplete_delivery_rule=Rule(DELIVERY_INCOMPLETE, DELIVERY_INCOMPLETE, "critical", "halt"),
    )


def masks(n: int, **flagged: list[int]) -> dict[str, np.ndarray]:
    out = {}
    for rid in ("a_range", "b_known", "a_required", TYPE_MISMATCH, MISSING_COLUMN):
        m = np.zeros(n, dtype=bool)
        m[flagged.get(rid, [])] = True
        out[rid] = m
    return out


def test_a_clean_partition_publishes_every_row():
    d = decide(contract(), masks(100), {}, Tally(rows=100))
    assert d.status == "published" and d.halted == [] and d.quarantined == []
    assert d.quarantined_rows == 0 and not d.quarantine_mask.any() and d.rate == 0.0
    assert {r["id"] for r in d.rules} >= {"a_range", QUARANTINE_RATE, UNSAFE_FILE_NAME, MALFORMED_ROW}


def test_quarantine_rules_take_their_rows_and_warnings_take_none():
    d = decide(contract(), masks(100, a_range=[3, 7], b_known=[1, 2, 3], type_mismatch=[7, 9]), {}, Tally(rows=100))
    assert d.status == "published"
    assert d.quarantined == ["a_range", TYPE_MISMATCH] and d.warned == ["b_known"]
    assert np.flatnonzero(d.quarantine_mask).tolist() == [3, 7, 9]  # a row breaking two rules counts once
    assert d.quarantined_rows == 3 and d.rate == pytest.approx(0.03)
    assert d.rule_counts == {"a_range": 2, "b_known": 3, TYPE_MISMATCH: 2}  # failed rules only


def test_malformed_rows_are_landed_and_quarantined():
    d = decide(contract(), masks(98), {}, Tally(rows=98, malformed=2))
    assert d.status == "published" and MALFORMED_ROW in d.quarantined
    assert d.quarantined_rows == 2 and d.quarantined_malformed == 2 and d.rate == pytest.approx(0.02)


def test_a_quarantine_above_the_rate_halts():
    d = decide(contract(max_rate=0.05), masks(100, a_range=list(range(6))), {}, Tally(rows=100))
    assert d.status == "halted" and d.halted == [QUARANTINE_RATE]


def test_unreadable_bytes_count_toward_the_rate_even_without_rows():
    small = decide(contract(), masks(100), {}, Tally(rows=100, good_bytes=990, bad_bytes=10))
    assert small.status == "published" and small.rate == pytest.approx(0.01)
    lost = decide(contract(), masks(100), {}, Tally(rows=100, good_bytes=600, bad_bytes=400))
    assert lost.status == "halted" and lost.halted == [QUARANTINE_RATE] and lost.rate == pytest.approx(0.4)


@pytest.mark.parametrize(
    ("flag", "tally", "rule"),
    [
        ({"a_required": [5]}, Tally(rows=100), "a_required"),
        ({}, Tally(rows=100, unsafe_files=1), UNSAFE_FILE_NAME),
        ({}, Tally(rows=0), "rows"),
    ],
)
def test_a_halt_rule_halts(flag, tally, rule):
    d = decide(contract(), masks(tally.rows, **flag), {}, tally)
    assert d.status == "halted" and rule in d.halted


def test_gx_disagreement_is_reported_not_decisive():
    gx = {"a_range": {"success": False, "unexpected_count": 3, "parts": 1, "max_part": 3, "observed_value": None}}
    d = decide(contract(), masks(100, a_range=[1, 2]), gx, Tally(rows=100))
    assert d.disagreements == ["a_range"] and d.quarantined_rows == 2
    # one expectation per date part: a row breaking two parts is counted twice by GX
    assert gx_agrees({"parts": 3, "max_part": 2, "unexpected_count": 4}, 3)
    assert not gx_agrees({"parts": 3, "max_part": 2, "unexpected_count": 4}, 5)


# ---- the gate's judgement


@pytest.fixture(scope="module")
def project():
    from pipelines.core.config import load_project

    real = load_project("flights_delay")  # its criteria, with a shorter bootstrap to keep the unit tests quick
    gate = real.gate.model_copy(update={"bootstrap": real.gate.bootstrap.model_copy(update={"samples": 200})})
    return real.model_copy(update={"gate": gate})


def holdout(n: int = 4000, seed: int = 1) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n).astype(float)
    signal = y + rng.normal(0, 1.0, n)
    days = [f"2013-01-{d:02d}" for d in range(1, 9)]
    rows = pd.DataFrame(
        {
            "ds": np.sort(rng.choice(days, n)),
            "origin": rng.choice(["EWR", "JFK", "LGA"], n),
            "carrier": rng.choice(["AA", "UA"], n),
        }
    )
    return rows, y, 1 / (1 + np.exp(-signal))


def noisier(y: np.ndarray, scores: np.ndarray, noise: float, seed: int = 2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(scores + rng.normal(0, noise, len(y)), 0, 1)


def test_without_a_champion_only_the_floors_apply(project):
    from pipelines.training.gate import judge

    rows, y, good = holdout()
    verdict = judge(project, rows, y, good, None)
    assert verdict["passed"] and [c["name"] for c in verdict["criteria"]] == ["floor:roc_auc"]
    assert verdict["notes"] == ["no champion yet: only the floors apply"]
    coin = np.random.default_rng(3).random(len(y))
    assert judge(project, rows, y, coin, None)["failed"] == ["floor:roc_auc"]


def test_a_clearly_better_challenger_passes_every_criterion(project):
    from pipelines.training.gate import judge

    rows, y, good = holdout()
    verdict = judge(project, rows, y, good, noisier(y, good, 0.4))
    assert verdict["passed"], verdict["failed"]
    names = [c["name"] for c in verdict["criteria"]]
    assert names == ["floor:roc_auc", "min_change:roc_auc", "bootstrap:roc_auc", "slices:origin", "slices:carrier"]


def test_an_equal_or_worse_challenger_is_never_promoted(project):
    from pipelines.training.gate import judge

    rows, y, good = holdout()
    same = judge(project, rows, y, good, good)
    assert not same["passed"] and "min_change:roc_auc" in same["failed"]
    worse = judge(project, rows, y, noisier(y, good, 0.4), good)
    assert not worse["passed"] and {"min_change:roc_auc", "bootstrap:roc_auc"} <= set(worse["failed"])


def test_a_slice_that_regresses_blocks_a_better_overall_challenger(project):
    from pipelines.training.gate import judge

    rows, y, good = holdout(n=6000)
    champion = noisier(y, good, 0.5)
    challenger = good.copy()
    jfk = (rows["origin"] == "JFK").to_numpy()
    challenger[jfk] = noisier(y, good, 1.5, seed=9)[jfk]  # much worse on one airport only
    verdict = judge(project, rows, y, challenger, champion)
    assert "slices:origin" in verdict["failed"]


# ---- which version was champion on a day


def version(v: int, holdout: str | None, **tags: str) -> SimpleNamespace:
    # A promoted-looking tag on every version: as-of pinning must not trust it, only the alias history.
    base = {"gate_decision": "promoted"} | ({"holdout_window": holdout} if holdout else {}) | tags
    return SimpleNamespace(version=str(v), tags=base)


def moved(event: str, champion: str | None, previous: str | None = None) -> dict:
    return {"event": event, "champion": champion, "previous": previous}


def test_as_of_takes_the_newest_champion_whose_window_ended_by_the_day():
    from pipelines.scoring.pin import as_of as pinned

    versions = [
        version(1, "2013-01-25..2013-01-31"),
        version(2, "2013-06-20..2013-06-26"),
        version(3, "2013-06-20..2013-06-26"),  # tagged promoted (a dry run did that once) but never champion
        version(4, "2013-06-20..2013-06-26", rolled_back="bad scores"),
        version(5, None),
        version(6, "garbage"),
    ]
    entries = [
        moved("promote", "1"),
        moved("promote", "2", "1"),
        moved("promote", "4", "2"),
        moved("rollback", "2", "4"),
        moved("promote", "5", "2"),
        moved("promote", "6", "5"),
        moved("rollback", "5", "6"),
        moved("rollback", "6", "5"),  # rolled forward again: 6 is champion, 5 is the rolled-back one
    ]

    def as_of(vs, ds, es=entries):
        return pinned(vs, ds, es)

    assert as_of(versions, "2013-01-30") is None
    assert as_of(versions, "2013-01-31").version == "1"
    assert as_of(versions, "2013-06-25").version == "1"
    assert as_of(versions, "2013-07-01").version == "2"
    seven = version(7, "2013-06-20..2013-06-26")
    assert as_of([*versions, seven], "2013-07-01").version == "2"  # 7 was never champion
    assert as_of([*versions, seven], "2013-07-01", [*entries, moved("promote", "7", "6")]).version == "7"  # ties
    assert as_of(versions, "2013-07-01", []) is None  # no history: nothing was ever champion


def test_a_one_class_holdout_is_judged_without_a_crash(project):
    """Every resample of a one-class holdout has an undefined AUC: the criteria fail, nothing raises."""
    from pipelines.training.gate import judge

    rows, y, good = holdout()
    zeros = np.zeros_like(y)
    verdict = judge(project, rows, zeros, good, noisier(y, good, 0.4))
    assert not verdict["passed"]
    assert {"floor:roc_auc", "bootstrap:roc_auc", "slices:origin", "slices:carrier"} <= set(verdict["failed"])
    boot = next(c for c in verdict["criteria"] if c["name"] == "bootstrap:roc_auc")
    assert boot["low"] is None and "needs 5" in boot["detail"]


def test_slices_too_small_to_check_are_never_a_silent_pass(project):
    from pipelines.core.config import SlicesConfig
    from pipelines.core.metrics import METRICS
    from pipelines.training.gate import slice_criterion

    rows, y, good = holdout(n=600)
    champion = noisier(y, good, 0.4)
    metric = METRICS["roc_auc"]
    strict = slice_criterion(rows, "origin", y, good, champion, metric, SlicesConfig(min_size=1000))
    assert not strict["passed"] and strict["not_checked"] and strict["checked"] == 0
    assert {s["value"] for s in strict["unchecked"]} == {"EWR", "JFK", "LGA"}
    lenient = slice_criterion(
        rows, "origin", y, good, champion, metric, SlicesConfig(min_size=1000, unchecked="record")
    )
    assert lenient["passed"] and lenient["not_checked"]  # recorded as not checked, and shown so
    checked = slice_criterion(rows, "origin", y, good, champion, metric, SlicesConfig(min_size=100))
    assert checked["passed"] and not checked["not_checked"] and checked["checked"] == 3


def test_a_first_champion_needs_a_floor(project):
    from pipelines.training.gate import judge

    rows, y, good = holdout()
    unfloored = project.model_copy(update={"gate": project.gate.model_copy(update={"floors": {}})})
    verdict = judge(unfloored, rows, y, good, None)
    assert not verdict["passed"] and verdict["failed"] == ["floors"]


def test_the_bootstrap_resamples_days_so_a_gain_that_only_holds_some_days_is_not_significant(project):
    """Days alike within, unlike between: the challenger wins big on four days and loses on four.

    Resampling rows treats 16,000 rows as independent and calls the pooled gain
    certain; resampling days sees eight draws that disagree.
    """
    from pipelines.core.metrics import METRICS
    from pipelines.training.gate import _bootstrap

    rows, y, good = holdout(n=16000)
    champion = noisier(y, good, 0.6)
    challenger = noisier(y, good, 0.25, seed=4)
    bad_days = rows["ds"].isin(["2013-01-02", "2013-01-04", "2013-01-06", "2013-01-08"]).to_numpy()
    challenger[bad_days] = noisier(y, good, 0.9, seed=5)[bad_days]
    boot = project.gate.bootstrap
    by_day = _bootstrap(METRICS["roc_auc"], y, challenger, champion, boot, rows["ds"].to_numpy())
    by_row = _bootstrap(
        METRICS["roc_auc"], y, challenger, champion, boot.model_copy(update={"unit": "row"}), rows["ds"].to_numpy()
    )
    assert by_day["days"] == 8 and len(by_day["day_gains"]) == 8
    assert by_row["low"] > 0  # rows: "significantly better"
    assert by_day["low"] < 0 < by_day["high"]  # days: it depends on the day
    assert by_day["high"] - by_day["low"] > 2 * (by_row["high"] - by_row["low"])
