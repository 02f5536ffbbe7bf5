"""The validation decision: pure functions of what was read, what the rules flagged and what GX counted.

:func:`decide` takes the row masks, GX's per-rule counts and a :class:`Tally`
of the delivery, and returns the :class:`Decision`: every rule's outcome, which
rules halt, quarantine or warn, the quarantine mask and rate, and the status
(``published`` or ``halted``). No I/O: it is unit-tested on hand-made inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipelines.core.contracts import MALFORMED_ROW, QUARANTINE_RATE, UNSAFE_FILE_NAME, Contract, Rule
from pipelines.ingest.rules import describe_failure

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class Tally:
    """What a delivery held, counted as read (independently of the rules)."""

    #: Rows parsed into the typed frame.
    rows: int
    #: CSV rows that did not split into the header's columns (kept as raw text).
    malformed: int = 0
    #: Unreadable files whose name is unsafe as a storage key (they cannot be copied to quarantine).
    unsafe_files: int = 0
    #: Bytes of the readable files, and of the unreadable ones.
    good_bytes: int = 0
    bad_bytes: int = 0

    @property
    def landed_rows(self) -> int:
        return self.rows + self.malformed


@dataclass
class Decision:
    """Every rule's outcome and what follows for the partition."""

    status: str
    rules: list[dict[str, Any]]
    halted: list[str]
    quarantined: list[str]
    warned: list[str]
    #: True for each parsed row that goes to quarantine.
    quarantine_mask: np.ndarray
    #: Quarantined rows: the mask's plus malformed rows when their rule quarantines.
    quarantined_rows: int
    quarantined_malformed: int
    rate: float
    disagreements: list[str] = field(default_factory=list)

    @property
    def rule_counts(self) -> dict[str, int | None]:
        return {r["id"]: r["rows"] for r in self.rules if r["failed"]}


def _count(rule: Rule, masks: dict[str, np.ndarray], tally: Tally) -> tuple[int | None, bool]:
    """How many rows break ``rule`` (``None`` for a table rule) and whether it failed."""
    if rule.id == MALFORMED_ROW:
        return tally.malformed, tally.malformed > 0
    if rule.id == UNSAFE_FILE_NAME:
        return tally.unsafe_files, tally.unsafe_files > 0
    if rule.row_level:
        count = int(masks[rule.id].sum())
        return count, count > 0
    lo, hi = rule.params["min"], rule.params["max"]  # row_count, over every landed row
    return None, (lo is not None and tally.landed_rows < lo) or (hi is not None and tally.landed_rows > hi)


def gx_agrees(gx: dict[str, Any], count: int) -> bool:
    """Whether GX's unexpected count matches the mask's (one expectation per part: a row may break several)."""
    if gx["parts"] > 1:
        return gx["max_part"] <= count <= gx["unexpected_count"]
    return gx["unexpected_count"] == count


def _outcome(rule: Rule, failed: bool, count: int | None, gx: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "id": rule.id,
        "kind": rule.kind,
        "columns": list(rule.columns),
        "severity": rule.severity,
        "action": rule.action,
        "failed": bool(failed),
        "rows": count,
        "gx_success": None if gx is None else gx["success"],
        "gx_unexpected_count": None if gx is None else gx["unexpected_count"],
        "observed_value": None if gx is None else gx["observed_value"],
        "description": rule.description or describe_failure(rule),
    }


def decide(contract: Contract, masks: dict[str, np.ndarray], gx: dict[str, dict[str, Any]], tally: Tally) -> Decision:
    """Decide a partition from its rule masks, GX's counts and its tally (pure).

    Args:
        contract: the compiled contract.
        masks: ``{rule_id: bool array}`` over the parsed rows, for every row-level rule.
        gx: GX's per-rule results (``success``, ``unexpected_count``, ``parts``, ``max_part``, ``observed_value``).
        tally: what the delivery held.
    """
    import numpy as np

    outcomes, disagreements = [], []
    by_action: dict[str, list[str]] = {"halt": [], "quarantine": [], "warn": []}
    for rule in contract.all_rules:
        if rule.id == QUARANTINE_RATE:
            continue
        count, failed = _count(rule, masks, tally)
        g = gx.get(rule.id)
        if g is not None and rule.row_level and not gx_agrees(g, count):
            disagreements.append(rule.id)
        if failed:
            by_action[rule.action].append(rule.id)
        outcomes.append(_outcome(rule, failed, count, g))
    q_mask = np.zeros(tally.rows, dtype=bool)
    for rid in by_action["quarantine"]:
        if rid in masks:
            q_mask |= masks[rid]
    q_malformed = tally.malformed if MALFORMED_ROW in by_action["quarantine"] else 0
    q_rows = int(q_mask.sum()) + q_malformed
    rate_outcome, rate = _rate_outcome(contract, q_rows, tally)
    if rate_outcome["failed"]:
        by_action["halt"].append(QUARANTINE_RATE)
    outcomes.append(rate_outcome)
    return Decision(
        status="halted" if by_action["halt"] else "published",
        rules=outcomes,
        halted=sorted(by_action["halt"]),
        quarantined=sorted(by_action["quarantine"]),
        warned=sorted(by_action["warn"]),
        quarantine_mask=q_mask,
        quarantined_rows=q_rows,
        quarantined_malformed=q_malformed,
        rate=rate,
        disagreements=disagreements,
    )


def _rate_outcome(contract: Contract, q_rows: int, tally: Tally) -> tuple[dict[str, Any], float]:
    """The quarantine rate rule: the larger of the quarantined share of rows and the unreadable share of bytes.

    An unreadable file's rows cannot be counted: its share of the landed bytes
    stands in for them, so losing a whole airport's file halts the day while a
    small corrupt side file does not.
    """
    row_rate = q_rows / tally.landed_rows if tally.landed_rows else 0.0
    total_bytes = tally.good_bytes + tally.bad_bytes
    byte_rate = tally.bad_bytes / total_bytes if tally.bad_bytes else 0.0
    rate = max(row_rate, byte_rate)
    rule = contract.rule(QUARANTINE_RATE)
    outcome = {
        "id": QUARANTINE_RATE,
        "kind": QUARANTINE_RATE,
        "columns": [],
        "severity": rule.severity,
        "action": "halt",
        "failed": rate > contract.max_quarantine_rate,
        "rows": q_rows,
        "observed_value": {"rows": round(row_rate, 6), "unreadable_bytes": round(byte_rate, 6)},
        "gx_success": None,
        "gx_unexpected_count": None,
        "description": rule.description,
    }
    return outcome, rate
