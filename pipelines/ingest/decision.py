"""The validation decision: pure functions of what was read, what the rules flagged and what GX counted.

:func:`decide` takes the row masks, GX's per-rule counts and a :class:`Tally`
of the delivery, and returns the :class:`Decision`: every rule's outcome, which
rules halt, quarantine or warn, the quarantine mask and rate, and the status
(``published`` or ``halted``). No I/O: it is unit-tested on hand-made inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipelines.core.contracts import (
    DELIVERY_INCOMPLETE,
    EMPTY_FILE,
    MALFORMED_ROW,
    QUARANTINE_RATE,
    UNSAFE_FILE_NAME,
    Contract,
    Rule,
)
from pipelines.ingest.rules import describe_failure

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class Tally:
    """What a delivery held, counted as read (independently of the rules).

    Two units: *rows* are what the parser produced (plus unsplittable
    records); *records* are counted on the files' bytes, independently of the
    parser (CSV lines, Parquet footers). Every record ends as a validated
    row, inside a quarantined row or malformed record, or lost.
    """

    #: Rows parsed into the typed frame.
    rows: int
    #: CSV records that did not split into the header's columns (kept as raw text).
    malformed: int = 0
    #: Unreadable files whose name is unsafe as a storage key (they cannot be copied to quarantine).
    unsafe_files: int = 0
    #: Bytes of the readable files, and of the unreadable ones.
    good_bytes: int = 0
    bad_bytes: int = 0
    #: Physical records of every file whose records can be counted (None: the same as ``landed_rows``).
    records: int | None = None
    #: Lines the unsplittable records hold.
    malformed_records: int | None = None
    #: Records not read as rows: in unreadable files, or swallowed by the parser.
    lost_records: int = 0
    #: Data files with no records (0 bytes, or a header only).
    empty_files: tuple[str, ...] = ()
    #: Records read as rows per expected source (when the contract lists them).
    source_records: dict[str, int] = field(default_factory=dict)

    @property
    def landed_rows(self) -> int:
        return self.rows + self.malformed

    @property
    def landed_records(self) -> int:
        return self.landed_rows if self.records is None else self.records

    @property
    def malformed_lines(self) -> int:
        return self.malformed if self.malformed_records is None else self.malformed_records


@dataclass
class Decision:
    """Every rule's outcome and what follows for the partition."""

    status: str
    rules: list[dict[str, Any]]
    halted: list[str]
    quarantined: list[str]
    warned: list[str]
    #: True for each parsed row that goes to quarantine (None when decided from counts alone).
    quarantine_mask: np.ndarray | None
    #: Quarantined rows: the mask's plus unsplittable records when their rule quarantines.
    quarantined_rows: int
    quarantined_malformed: int
    rate: float
    disagreements: list[str] = field(default_factory=list)
    #: Records the quarantined rows hold (a row whose values span lines holds several).
    quarantined_records: int = 0

    @property
    def rule_counts(self) -> dict[str, int | None]:
        return {r["id"]: r["rows"] for r in self.rules if r["failed"]}


def short_sources(contract: Contract, tally: Tally) -> dict[str, float]:
    """Each expected source's share of the landed records, for those below the contract's minimum (or absent)."""
    spec = contract.expected_sources
    if spec is None:
        return {}
    total = tally.landed_records
    shares = {s: (tally.source_records.get(s, 0) / total if total else 0.0) for s in spec.sources}
    return {s: round(v, 6) for s, v in shares.items() if tally.source_records.get(s, 0) == 0 or v < spec.min_share}


def _count(rule: Rule, counts: dict[str, int], tally: Tally, contract: Contract) -> tuple[int | None, bool]:
    """How many rows break ``rule`` (files or sources for delivery rules, None for row_count), and whether it failed."""
    if rule.id == MALFORMED_ROW:
        count = tally.malformed + counts.get(MALFORMED_ROW, 0)
        return count, count > 0
    if rule.id == UNSAFE_FILE_NAME:
        return tally.unsafe_files, tally.unsafe_files > 0
    if rule.id == EMPTY_FILE:
        return len(tally.empty_files), bool(tally.empty_files)
    if rule.id == DELIVERY_INCOMPLETE:
        short = short_sources(contract, tally)
        return len(short), bool(short)
    if rule.row_level:
        count = counts[rule.id]
        return count, count > 0
    lo, hi = rule.params["min"], rule.params["max"]  # row_count, over every landed record
    n = tally.landed_records
    return None, (lo is not None and n < lo) or (hi is not None and n > hi)


def gx_agrees(gx: dict[str, Any], count: int) -> bool:
    """Whether GX's unexpected count matches the mask's (one expectation per part: a row may break several).

    A key-uniqueness expectation run batch by batch (``scope: batch``) sees
    only the duplicates within each batch, a subset of the day's.
    """
    if gx.get("scope") == "batch":
        return gx["unexpected_count"] <= count
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
        # "batch": GX ran batch by batch and saw duplicates within a batch only (the rows count is the day's).
        "gx_scope": None if gx is None else gx.get("scope", "day"),
        "observed_value": None if gx is None else gx["observed_value"],
        "description": rule.description or describe_failure(rule),
    }


@dataclass(frozen=True)
class Counts:
    """What the row rules flagged, as counts: all a decision needs, however the rows were read.

    Read in one piece, :func:`decide` counts the masks; read in record
    batches, the counts are merged batch by batch (table-level rules such as
    key uniqueness are counted over the whole day before they get here).
    """

    #: Rows each row-level rule flags (``malformed_row``: parsed rows whose values span lines).
    rules: dict[str, int]
    #: Parsed rows flagged by any row rule whose action is ``quarantine`` (a row breaking two counts once).
    quarantine_rows: int
    #: Records those rows hold.
    quarantine_records: int


def quarantine_rule_ids(contract: Contract) -> list[str]:
    """Row-level rules whose failure quarantines a row (``malformed_row`` included when it quarantines)."""
    return [r.id for r in contract.all_rules if r.action == "quarantine" and (r.row_level or r.id == MALFORMED_ROW)]


def decide(
    contract: Contract,
    masks: dict[str, np.ndarray],
    gx: dict[str, dict[str, Any]],
    tally: Tally,
    row_records: np.ndarray | None = None,
) -> Decision:
    """Decide a partition from its rule masks, GX's counts and its tally (pure).

    Args:
        contract: the compiled contract.
        masks: ``{rule_id: bool array}`` over the parsed rows, for every row-level rule
            (and ``malformed_row`` for parsed rows whose values span lines).
        gx: GX's per-rule results (``success``, ``unexpected_count``, ``parts``, ``max_part``, ``observed_value``).
        tally: what the delivery held.
        row_records: records each parsed row holds (default: one each).
    """
    import numpy as np

    q_mask = np.zeros(tally.rows, dtype=bool)
    for rid in quarantine_rule_ids(contract):
        if rid in masks:
            q_mask |= masks[rid]
    weights = np.ones(tally.rows, dtype=np.int64) if row_records is None else row_records
    counts = Counts(
        rules={rid: int(m.sum()) for rid, m in masks.items()},
        quarantine_rows=int(q_mask.sum()),
        quarantine_records=int(weights[q_mask].sum()),
    )
    decision = decide_counts(contract, counts, gx, tally)
    decision.quarantine_mask = q_mask
    return decision


def decide_counts(contract: Contract, counts: Counts, gx: dict[str, dict[str, Any]], tally: Tally) -> Decision:
    """Decide a partition from the counts of its row rules, GX's counts and its tally (pure).

    A rule whose action is ``quarantine`` flags only the rows it fails, so
    the rows quarantined are those ``counts`` says any quarantining rule
    flags, whichever of those rules failed.
    """
    outcomes, disagreements = [], []
    by_action: dict[str, list[str]] = {"halt": [], "quarantine": [], "warn": []}
    for rule in contract.all_rules:
        if rule.id == QUARANTINE_RATE:
            continue
        count, failed = _count(rule, counts.rules, tally, contract)
        g = gx.get(rule.id)
        if g is not None and rule.row_level and not gx_agrees(g, count):
            disagreements.append(rule.id)
        if failed:
            by_action[rule.action].append(rule.id)
        outcome = _outcome(rule, failed, count, g)
        if rule.id == DELIVERY_INCOMPLETE:
            outcome["observed_value"] = {"short_sources": short_sources(contract, tally)}
        elif rule.id == EMPTY_FILE:
            outcome["observed_value"] = {"files": list(tally.empty_files)}
        outcomes.append(outcome)
    quarantines_malformed = MALFORMED_ROW in by_action["quarantine"]
    q_malformed = tally.malformed if quarantines_malformed else 0
    q_rows = counts.quarantine_rows + q_malformed
    q_records = counts.quarantine_records + (tally.malformed_lines if quarantines_malformed else 0)
    rate_outcome, rate = _rate_outcome(contract, q_rows, q_records, tally)
    if rate_outcome["failed"]:
        by_action["halt"].append(QUARANTINE_RATE)
    outcomes.append(rate_outcome)
    return Decision(
        status="halted" if by_action["halt"] else "published",
        rules=outcomes,
        halted=sorted(by_action["halt"]),
        quarantined=sorted(by_action["quarantine"]),
        warned=sorted(by_action["warn"]),
        quarantine_mask=None,
        quarantined_rows=q_rows,
        quarantined_malformed=q_malformed,
        rate=rate,
        disagreements=disagreements,
        quarantined_records=q_records,
    )


def _rate_outcome(contract: Contract, q_rows: int, q_records: int, tally: Tally) -> tuple[dict[str, Any], float]:
    """The quarantine rate rule: the larger of the share of records not published and the unreadable share of bytes.

    Records not published are those the quarantined rows hold plus the lost
    ones (in unreadable files, or swallowed by the parser), over every counted
    record. A file whose records cannot be counted (a Parquet file without a
    readable footer) is weighed by its share of the landed bytes instead, so
    losing a whole airport's file halts the day while a small corrupt side file
    does not.
    """
    total = tally.landed_records
    record_rate = (q_records + tally.lost_records) / total if total else 0.0
    total_bytes = tally.good_bytes + tally.bad_bytes
    byte_rate = tally.bad_bytes / total_bytes if tally.bad_bytes else 0.0
    rate = max(record_rate, byte_rate)
    rule = contract.rule(QUARANTINE_RATE)
    outcome = {
        "id": QUARANTINE_RATE,
        "kind": QUARANTINE_RATE,
        "columns": [],
        "severity": rule.severity,
        "action": "halt",
        "failed": rate > contract.max_quarantine_rate,
        "rows": q_rows,
        "observed_value": {
            "rows": round(record_rate, 6),
            "lost_records": tally.lost_records,
            "unreadable_bytes": round(byte_rate, 6),
        },
        "gx_success": None,
        "gx_unexpected_count": None,
        "description": rule.description,
    }
    return outcome, rate
