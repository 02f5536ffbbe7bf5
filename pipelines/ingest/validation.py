"""The validation step: landed partition -> validated/ + quarantine/ + report.

``validate_partition`` reads everything landed for a partition, coerces it to
the contract's types, runs the contract's Great Expectations suite (the
record), computes row masks (the decision), and then either

- **publishes**: validated rows as typed Parquet, quarantined rows with their
  original values, rule ids and reasons, unreadable files as files, and the
  report; ``landed_rows == validated_rows + quarantined_rows``; or
- **halts**: a halt rule fired (or the quarantine rate was exceeded); the
  report says why, nothing is left in ``validated/`` or ``quarantine/`` for
  the partition, and :class:`~pipelines.core.errors.ContractHalt` is raised.

Re-running replaces the partition's outputs (their keys are the catalog's:
:mod:`pipelines.core.catalog`). The step reads (:mod:`~pipelines.ingest.landing`),
decides in pure functions (:mod:`~pipelines.ingest.rules` for the masks and the
GX suite, :mod:`~pipelines.ingest.decision` for the outcome), then writes
(:mod:`~pipelines.ingest.outputs`, :mod:`~pipelines.ingest.report`).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from pipelines.core import catalog
from pipelines.core.contracts import MISSING_COLUMN, TYPE_MISMATCH, Contract, contract_for
from pipelines.core.errors import ContractHalt, NothingLanded
from pipelines.core.partitions import ds_str

if TYPE_CHECKING:
    import numpy as np

    from pipelines.core.config import ProjectConfig
    from pipelines.core.storage import Storage
    from pipelines.ingest.decision import Decision, Tally
    from pipelines.ingest.landing import BadFile, Parsed, ParsedFile

log = logging.getLogger(__name__)


def delivery(project: ProjectConfig, ds: str, storage: Storage) -> list[catalog.Landed]:
    """The complete delivery of a partition: its data files, once the ready marker is there.

    Raises:
        NothingLanded: no data file landed, or the ready marker (when the
            dataset has one) is missing: a half-delivered day is never validated.
    """
    dataset = project.dataset.name
    landed = catalog.landed_files(storage, dataset, ds)
    folder = storage.uri(catalog.landing_dir(dataset, ds))
    if not landed:
        raise NothingLanded(f"nothing landed for {dataset} ds={ds} (looked in {folder})")
    marker = project.ingest.ready_marker
    if marker and not storage.exists(catalog.landing_file(dataset, ds, marker)):
        raise NothingLanded(
            f"{dataset} ds={ds}: delivery not complete, no {marker} marker in {folder} ({len(landed)} file(s) so far)"
        )
    return landed


def validate_partition(
    project: ProjectConfig, ds: str, *, storage: Storage | None = None, contract: Contract | None = None
) -> dict[str, Any]:
    """Validate one landed partition against the project's data contract.

    Args:
        project: the model project (its dataset and contract).
        ds: partition key ``YYYY-MM-DD``.
        storage: storage to use (default: the configured root).
        contract: compiled contract (default: the project's).

    Returns:
        The summary (also saved in the report): ``ds``, ``status``,
        ``landed_rows``, ``validated_rows``, ``quarantined_rows``,
        ``quarantined_files``, ``rules_failed``, ``rules_warned``,
        ``rule_counts``, ``report`` and more.

    Raises:
        NothingLanded: no file landed for the partition, or the delivery is
            not complete (its ready marker is missing).
        ContractHalt: a halt rule fired; the report is written, nothing published.
    """
    from pipelines.core.storage import get_storage
    from pipelines.ingest.decision import decide
    from pipelines.ingest.report import build_summary, report_document
    from pipelines.ingest.rules import run_expectations

    t0 = time.monotonic()
    ds = ds_str(ds)
    storage = storage or get_storage()
    contract = contract or contract_for(project)
    dataset = project.dataset.name
    landed = delivery(project, ds, storage)
    log.info(
        "validating %s ds=%s: %d landed file(s), contract %s v%s",
        dataset,
        ds,
        len(landed),
        contract.id,
        contract.version,
    )
    parsed, bad, batch, tally = _read(storage, landed, contract)
    masks = _masks(contract, batch, ds)
    gx = run_expectations(contract, batch.frame, ds)
    decision = decide(contract, masks, gx["by_rule"], tally)
    for r in decision.rules:
        if r["id"] in decision.disagreements:
            log.warning("rule %s: GX counted %s unexpected, masks %s", r["id"], r["gx_unexpected_count"], r["rows"])
    summary = build_summary(project, contract, ds, len(landed), bad, batch, tally, decision)
    summary["report"] = storage.uri(catalog.validation_report(dataset, ds))
    summary["report_html"] = storage.uri(catalog.validation_html(dataset, ds))
    if decision.status == "halted":
        # Nothing of this partition may stay visible downstream.
        storage.delete_prefix(catalog.validated_dir(dataset, ds))
        storage.delete_prefix(catalog.quarantine_dir(dataset, ds))
    else:
        summary.update(_publish(storage, contract, dataset, ds, batch, bad, masks, tally, decision, summary))
    summary["seconds"] = round(time.monotonic() - t0, 3)
    _write_report(storage, dataset, ds, report_document(summary, decision, parsed, gx["raw"]), decision)
    _log_outcome(summary, len(bad))
    if decision.status == "halted":
        raise ContractHalt(
            f"{dataset} ds={ds} halted by {', '.join(decision.halted)}: nothing published; see {summary['report']}",
            ds=ds,
            rules=decision.halted,
            report=summary["report"],
            summary=summary,
        )
    return summary


def _read(
    storage: Storage, landed: list[catalog.Landed], contract: Contract
) -> tuple[list[ParsedFile], list[BadFile], Parsed, Tally]:
    """Parse every delivered file, coerce and stack the readable ones, and count what was read."""
    from pipelines.ingest.decision import Tally
    from pipelines.ingest.landing import BadFile, combine, read_landed_file

    parsed, bad = [], []
    for f in landed:
        item = read_landed_file(storage, f.key, contract, name=f.name)
        (bad if isinstance(item, BadFile) else parsed).append(item)
    for b in bad:
        log.warning("file %s quarantined: %s", b.name, b.reason)
    batch = combine(parsed, contract)
    for name, cols in batch.extra_cols_by_file.items():
        log.warning("file %s has column(s) the contract does not know, dropped: %s", name, ", ".join(cols))
    tally = Tally(
        rows=len(batch.frame),
        malformed=len(batch.malformed),
        unsafe_files=sum(1 for b in bad if not b.copyable),
        good_bytes=sum(p.size for p in parsed),
        bad_bytes=sum(b.size for b in bad if b.size > 0),
    )
    return parsed, bad, batch, tally


def _masks(contract: Contract, batch: Parsed, ds: str) -> dict[str, np.ndarray]:
    """Every row-level rule's mask over the parsed rows, parse-stage rules included."""
    import numpy as np

    from pipelines.ingest.rules import compute_masks

    masks = compute_masks(contract, batch.frame, ds)
    masks[TYPE_MISMATCH] = np.zeros(len(batch.frame), dtype=bool)
    for fails in batch.type_fail_cols.values():
        masks[TYPE_MISMATCH] |= fails
    masks[MISSING_COLUMN] = batch.missing_mask
    return masks


def _publish(
    storage: Storage,
    contract: Contract,
    dataset: str,
    ds: str,
    batch: Parsed,
    bad: list[BadFile],
    masks: dict[str, np.ndarray],
    tally: Tally,
    decision: Decision,
    summary: dict[str, Any],
) -> dict[str, str]:
    """Write the quarantine, then the validated rows; returns their URIs.

    Every output is built before the first write: a failure here must not
    leave a new quarantine beside an old validated file.
    """
    import numpy as np

    from pipelines.ingest.outputs import quarantine_table, row_reasons, typed_table

    q_mask = decision.quarantine_mask
    q_idx = np.flatnonzero(q_mask)
    ids, reasons = row_reasons(contract, batch, masks, decision.quarantined, q_idx)
    q_table = quarantine_table(batch, q_idx, ids, reasons, include_malformed=bool(decision.quarantined_malformed))
    v_table = typed_table(contract, batch.frame[~q_mask])
    q_rows = decision.quarantined_rows
    if q_table.num_rows != q_rows or v_table.num_rows + q_rows != tally.landed_rows:  # every row accounted for
        raise RuntimeError(f"row accounting broken: {v_table.num_rows} + {q_table.num_rows} != {tally.landed_rows}")
    storage.delete_prefix(catalog.quarantine_files_dir(dataset, ds))
    storage.write_parquet(catalog.quarantine_rows(dataset, ds), q_table)
    for b in bad:
        if b.copyable:
            storage.write_bytes(catalog.quarantine_file(dataset, ds, b.name), storage.read_bytes(b.key))
    storage.write_json(catalog.quarantine_index(dataset, ds), summary["quarantined_files"])
    storage.write_parquet(catalog.validated_file(dataset, ds), v_table, row_group_size=256_000)
    return {
        "validated": storage.uri(catalog.validated_file(dataset, ds)),
        "quarantine": storage.uri(catalog.quarantine_rows(dataset, ds)),
    }


def _write_report(storage: Storage, dataset: str, ds: str, document: dict[str, Any], decision: Decision) -> None:
    from pipelines.ingest.report import render_html

    storage.write_json(catalog.validation_report(dataset, ds), document)
    storage.write_text(catalog.validation_html(dataset, ds), render_html(document["summary"], decision.rules))


def _log_outcome(summary: dict[str, Any], files_quarantined: int) -> None:
    log.info(
        "%s ds=%s %s: landed=%d validated=%d quarantined=%d files_quarantined=%d rules_failed=%s report=%s",
        summary["dataset"],
        summary["ds"],
        summary["status"],
        summary["landed_rows"],
        summary["validated_rows"],
        summary["quarantined_rows"],
        files_quarantined,
        ",".join(summary["rules_failed"]) or "-",
        summary["report"],
    )
