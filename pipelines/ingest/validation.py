"""The validation step: landed partition -> validated/ + quarantine/ + report.

``validate_partition`` reads everything landed for a partition, counts its
records on the bytes, coerces it to the contract's types, runs the contract's
Great Expectations suite (the record), computes row masks (the decision),
builds every output in memory and only then writes, after checking that the
delivery is still the one it read. It either

- **publishes**: validated rows as typed Parquet, quarantined rows with their
  original values, rule ids and reasons, unreadable files as files, and the
  report; ``landed_rows == validated_rows + quarantined_rows`` and
  ``landed_records == validated_rows + quarantined_records + lost_records``; or
- **halts**: a halt rule fired (or the quarantine rate was exceeded); the
  report says why, nothing is left in ``validated/`` or ``quarantine/`` for
  the partition, and :class:`~pipelines.core.errors.ContractHalt` is raised.

**A delivery is bound to its ready marker**: the marker is looked up first and
the files listed after it; a file modified after the marker means upstream is
still (re)writing the delivery, so the step waits
(:class:`~pipelines.core.errors.NothingLanded`) instead of validating a mix
of two deliveries under an old marker. If the files or the marker change
while the step runs, it writes nothing and raises
:class:`~pipelines.core.errors.DeliveryChanged`.

Re-running replaces the partition's outputs (their keys are the catalog's:
:mod:`pipelines.core.catalog`). The step reads (:mod:`~pipelines.ingest.landing`),
decides in pure functions (:mod:`~pipelines.ingest.rules` for the masks and the
GX suite, :mod:`~pipelines.ingest.decision` for the outcome), then writes
(:mod:`~pipelines.ingest.outputs`, :mod:`~pipelines.ingest.report`).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipelines.core import catalog
from pipelines.core.contracts import MALFORMED_ROW, MISSING_COLUMN, TYPE_MISMATCH, Contract, contract_for
from pipelines.core.errors import ContractHalt, DeliveryChanged, MissingInput, NothingLanded
from pipelines.core.partitions import ds_str
from pipelines.core.storage import parquet_bytes
from pipelines.core.withdrawal import held_for, models_on, withdraw_stale_scores

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from pipelines.core.config import DatasetConfig, ProjectConfig
    from pipelines.core.storage import Storage
    from pipelines.ingest.decision import Decision, Tally
    from pipelines.ingest.landing import BadFile, Parsed, ParsedFile

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Delivery:
    """A partition's delivery as listed once its ready marker was seen."""

    files: list[catalog.Landed]
    #: Every data file's (key, size, modified) and the marker's, to see a delivery change under the step.
    fingerprint: tuple[Any, ...]
    sizes: dict[str, int] = field(default_factory=dict)
    #: Files in the folder that are not data by convention (``_``/``.`` names, in-flight output), named in the report.
    ignored: list[str] = field(default_factory=list)


def delivery(source: DatasetConfig | ProjectConfig, ds: str, storage: Storage) -> Delivery:
    """The complete delivery of a partition: its ready marker first, then its data files, none newer than the marker.

    Raises:
        NothingLanded: no data file landed, the ready marker (when the dataset
            has one) is missing, or a file was written after the marker (a
            redelivery in progress): a half-delivered day is never validated.
    """
    from pipelines.core.config import dataset_of

    config = dataset_of(source)
    dataset = config.name
    folder = storage.uri(catalog.landing_dir(dataset, ds))
    marker = config.ingest.ready_marker
    marker_info = None
    if marker:
        try:
            marker_info = storage.info(catalog.landing_file(dataset, ds, marker))
        except MissingInput:
            so_far = len(catalog.landed_files(storage, dataset, ds))
            if not so_far:
                raise NothingLanded(f"nothing landed for {dataset} ds={ds} (looked in {folder})") from None
            raise NothingLanded(
                f"{dataset} ds={ds}: delivery not complete, no {marker} marker in {folder} ({so_far} file(s) so far)"
            ) from None
    infos = {i.key: i for i in storage.list_info(catalog.landing_dir(dataset, ds))}
    if marker_info is not None:
        infos.pop(marker_info.key, None)  # the marker is never data, whatever its name
    landed = catalog.landed_among(dataset, ds, list(infos))
    if not landed:
        raise NothingLanded(f"nothing landed for {dataset} ds={ds} (looked in {folder})")
    if marker_info is not None:
        newer = [f.name for f in landed if infos[f.key].modified_ns > marker_info.modified_ns]
        if newer:
            raise NothingLanded(
                f"{dataset} ds={ds}: {len(newer)} file(s) written after the {marker} marker ({', '.join(newer[:3])}): "
                "a redelivery is in progress; waiting for upstream to write the marker again"
            )
    stamp = [(f.key, infos[f.key].size, infos[f.key].modified_ns, infos[f.key].etag) for f in landed]
    if marker_info is not None:
        stamp.append((marker_info.key, marker_info.size, marker_info.modified_ns, marker_info.etag))
    data = {f.key for f in landed}
    prefix = catalog.landing_dir(dataset, ds) + "/"
    ignored = [k.removeprefix(prefix) for k in infos if k not in data]
    return Delivery(landed, tuple(stamp), {f.key: infos[f.key].size for f in landed}, ignored)


def _unchanged(config: DatasetConfig, ds: str, storage: Storage, first: Delivery) -> None:
    """Raise :class:`DeliveryChanged` unless the delivery is still the one the decision is about."""
    try:
        again = delivery(config, ds, storage)
    except NothingLanded as exc:
        changed = f"{config.name} ds={ds} changed while it was validated ({exc}); nothing written"
        raise DeliveryChanged(changed) from None
    if again.fingerprint != first.fingerprint:
        raise DeliveryChanged(
            f"{config.name} ds={ds}: the delivery changed while it was validated; nothing written, run again"
        )


@dataclass
class Reading:
    """Everything read from a delivery, before any rule is applied."""

    parsed: list[ParsedFile]
    bad: list[BadFile]
    batch: Parsed
    tally: Tally
    #: Files kept whole in quarantine/files: unreadable ones, and readable ones with lost or no records.
    kept_files: list[dict[str, Any]]


def validate_partition(
    source: DatasetConfig | ProjectConfig,
    ds: str,
    *,
    storage: Storage | None = None,
    contract: Contract | None = None,
) -> dict[str, Any]:
    """Validate one landed partition of a dataset against its data contract, once for every project reading it.

    Args:
        source: the dataset (or a model project: its dataset).
        ds: partition key ``YYYY-MM-DD``.
        storage: storage to use (default: the configured root).
        contract: compiled contract (default: the dataset's).

    Returns:
        The summary (also saved in the report): ``ds``, ``status``,
        ``landed_rows``, ``landed_records``, ``validated_rows``,
        ``quarantined_rows``, ``quarantined_records``, ``lost_records``,
        ``quarantined_files``, ``rules_failed``, ``rules_warned``,
        ``rule_counts``, ``report`` and more.

    Raises:
        NothingLanded: no file landed for the partition, or the delivery is
            not complete (its ready marker is missing or older than a file).
        DeliveryChanged: the delivery changed while it was read; nothing written.
        ContractHalt: a halt rule fired; the report is written, nothing published.
    """
    from pipelines.core.config import dataset_of
    from pipelines.core.storage import get_storage
    from pipelines.ingest.decision import decide
    from pipelines.ingest.report import build_summary, render_html, report_document
    from pipelines.ingest.rules import run_expectations

    t0 = time.monotonic()
    ds = ds_str(ds)
    config = dataset_of(source)
    storage = storage or get_storage()
    contract = contract or contract_for(config)
    dataset = config.name
    landed = delivery(config, ds, storage)
    log.info(
        "validating %s ds=%s: %d landed file(s), contract %s v%s",
        dataset,
        ds,
        len(landed.files),
        contract.id,
        contract.version,
    )
    reading = _read(storage, landed, contract)
    masks = _masks(contract, reading.batch, ds)
    gx = run_expectations(contract, reading.batch.frame, ds)
    decision = decide(contract, masks, gx["by_rule"], reading.tally, reading.batch.row_records)
    for r in decision.rules:
        if r["id"] in decision.disagreements:
            log.warning("rule %s: GX counted %s unexpected, masks %s", r["id"], r["gx_unexpected_count"], r["rows"])
    summary = build_summary(config, contract, ds, len(landed.files), reading, decision)
    summary["ignored_files"] = landed.ignored
    summary["report"] = storage.uri(catalog.validation_report(dataset, ds))
    summary["report_html"] = storage.uri(catalog.validation_html(dataset, ds))
    tables, validated = _outputs_to_publish(storage, contract, reading, masks, decision, summary)
    summary["seconds"] = round(time.monotonic() - t0, 3)
    document = report_document(summary, decision, reading.parsed, gx["raw"])
    built = Built(tables, validated, reading.kept_files, summary, document, render_html(summary, decision.rules))
    # Everything is decided and built: write only if the delivery is still the one read (checked again
    # inside the scores locks, which the write may have to wait for).
    _unchanged(config, ds, storage, landed)
    recheck = lambda: _unchanged(config, ds, storage, landed)  # noqa: E731
    _write(storage, dataset, ds, built, models_on(dataset), recheck)
    _log_outcome(summary, len(summary["quarantined_files"]))
    if decision.status == "halted":
        raise ContractHalt(
            f"{dataset} ds={ds} halted by {', '.join(decision.halted)}: nothing published; see {summary['report']}",
            ds=ds,
            rules=decision.halted,
            report=summary["report"],
            summary=summary,
        )
    return summary


def _outputs_to_publish(
    storage: Storage, contract: Contract, reading: Reading, masks: Any, decision: Any, summary: dict[str, Any]
) -> tuple[Tables | None, bytes | None]:
    """The tables and validated bytes of a published day (``None`` for a halt); the summary names them."""
    if decision.status != "published":
        return None, None
    dataset, ds = summary["dataset"], summary["ds"]
    tables = _outputs(contract, reading, masks, decision)
    validated = parquet_bytes(tables.validated, row_group_size=256_000)
    summary["validated"] = storage.uri(catalog.validated_file(dataset, ds))
    summary["validated_sha256"] = hashlib.sha256(validated).hexdigest()  # what scoring checks its input by
    summary["quarantine"] = storage.uri(catalog.quarantine_rows(dataset, ds))
    return tables, validated


def _read(storage: Storage, landed: Delivery, contract: Contract) -> Reading:
    """Parse every delivered file, coerce and stack the readable ones, and count what was read."""
    from pipelines.ingest.landing import BadFile, combine, read_landed_file

    parsed, bad = [], []
    for f in landed.files:
        try:
            item = read_landed_file(storage, f.key, contract, name=f.name)
        except MissingInput:
            raise DeliveryChanged(
                f"{f.name} was removed while the delivery was read; nothing written, run again"
            ) from None
        if item.size >= 0 and item.size != landed.sizes.get(f.key, item.size):
            raise DeliveryChanged(f"{f.name} changed size while it was read; nothing written, run again")
        (bad if isinstance(item, BadFile) else parsed).append(item)
    for b in bad:
        log.warning("file %s quarantined: %s", b.name, b.reason)
    for p in parsed:
        if p.lost:
            log.warning("file %s: %d of %d record(s) could not be read as rows", p.name, p.lost, p.records)
        if p.empty:
            log.warning("file %s holds no records", p.name)
    batch = combine(parsed, contract)
    for name, cols in batch.extra_cols_by_file.items():
        log.warning("file %s has column(s) the contract does not know, dropped: %s", name, ", ".join(cols))
    return Reading(parsed, bad, batch, _tally(parsed, bad, batch, contract), _kept_files(parsed, bad))


def _tally(parsed: list[ParsedFile], bad: list[BadFile], batch: Parsed, contract: Contract) -> Tally:
    from pipelines.ingest.decision import Tally

    sources: dict[str, int] = {}
    spec = contract.expected_sources
    for p in parsed:
        source = spec.source_of(p.name) if spec else None
        if source is not None:
            single = p.num_rows if p.broken is None else int((~p.broken).sum())
            sources[source] = sources.get(source, 0) + single
    return Tally(
        rows=len(batch.frame),
        malformed=len(batch.malformed),
        unsafe_files=sum(1 for b in bad if not b.copyable),
        good_bytes=sum(p.size for p in parsed),
        bad_bytes=sum(b.size for b in bad if b.size > 0),
        records=sum(p.records for p in parsed) + sum(b.records or 0 for b in bad),
        malformed_records=sum(p.malformed_records for p in parsed),
        lost_records=sum(p.lost for p in parsed) + sum(b.records or 0 for b in bad),
        empty_files=tuple(p.name for p in parsed if p.empty),
        source_records=sources,
    )


def _kept_files(parsed: list[ParsedFile], bad: list[BadFile]) -> list[dict[str, Any]]:
    """Files quarantined whole, with the rule and reason, their bytes and (when countable) records."""
    from pipelines.core.contracts import EMPTY_FILE, FILE_UNREADABLE, UNSAFE_FILE_NAME

    kept = [
        {
            "file": b.name,
            "rule": FILE_UNREADABLE if b.copyable else UNSAFE_FILE_NAME,
            "reason": b.reason,
            "bytes": b.size,
            "records": b.records,
            "lost_records": b.records,
            "_data": b.data if b.copyable else None,
        }
        for b in bad
    ]
    for p in parsed:
        if p.lost:
            reason = f"{p.lost} of {p.records} record(s) could not be read as rows"
            kept.append(
                {
                    "file": p.name,
                    "rule": FILE_UNREADABLE,
                    "reason": reason,
                    "bytes": p.size,
                    "records": p.records,
                    "lost_records": p.lost,
                    "_data": p.data,
                }
            )
        elif p.empty:
            kept.append(
                {
                    "file": p.name,
                    "rule": EMPTY_FILE,
                    "reason": "no records (empty, or a header only)",
                    "bytes": p.size,
                    "records": 0,
                    "lost_records": 0,
                    "_data": p.data,
                }
            )
    return kept


def _masks(contract: Contract, batch: Parsed, ds: str) -> dict[str, np.ndarray]:
    """Every row-level rule's mask over the parsed rows, parse-stage rules included."""
    import numpy as np

    from pipelines.ingest.rules import compute_masks

    masks = compute_masks(contract, batch.frame, ds)
    masks[TYPE_MISMATCH] = np.zeros(len(batch.frame), dtype=bool)
    for fails in batch.type_fail_cols.values():
        masks[TYPE_MISMATCH] |= fails
    masks[MISSING_COLUMN] = batch.missing_mask
    masks[MALFORMED_ROW] = batch.multiline_mask
    return masks


@dataclass
class Tables:
    validated: pa.Table
    quarantine: pa.Table


def _outputs(contract: Contract, reading: Reading, masks: dict[str, np.ndarray], decision: Decision) -> Tables:
    """The validated and quarantine tables, checked to account for every row and record before anything is written."""
    import numpy as np

    from pipelines.ingest.outputs import quarantine_table, row_reasons, typed_table

    batch, tally = reading.batch, reading.tally
    q_mask = decision.quarantine_mask
    q_idx = np.flatnonzero(q_mask)
    ids, reasons = row_reasons(contract, batch, masks, decision.quarantined, q_idx)
    q_table = quarantine_table(batch, q_idx, ids, reasons, include_malformed=bool(decision.quarantined_malformed))
    v_table = typed_table(contract, batch.frame[~q_mask])
    q_rows, v_rows = decision.quarantined_rows, v_table.num_rows
    q_records = int(np.asarray(q_table.column("_records")).sum()) if q_table.num_rows else 0
    if q_table.num_rows != q_rows or v_rows + q_rows != tally.landed_rows:  # every row accounted for
        raise RuntimeError(f"row accounting broken: {v_rows} + {q_table.num_rows} != {tally.landed_rows}")
    if v_rows + q_records + tally.lost_records != tally.landed_records:  # every record accounted for
        raise RuntimeError(
            f"record accounting broken: {v_rows} + {q_records} + {tally.lost_records} lost != {tally.landed_records}"
        )
    return Tables(v_table, q_table)


@dataclass
class Built:
    """Every output of a validation, built before the first write (``tables`` ``None``: halted)."""

    tables: Tables | None
    validated: bytes | None
    kept: list[dict[str, Any]]
    summary: dict[str, Any]
    document: dict[str, Any]
    page: str


def _write(
    storage: Storage, dataset: str, ds: str, built: Built, models: list[str], recheck: Callable[[], None]
) -> None:
    """Replace the partition's outputs with those built, then write the report.

    Inside the partition's own lock (two validations of a day never
    interleave, whether or not a project reads the dataset yet) and the
    scores lock of every model on the dataset: the delivery is
    checked to be still the one read (``recheck``), then the day's scores
    whose input is not the new validated file are withdrawn
    (:mod:`pipelines.core.withdrawal`), before the old data goes: BI never
    reads scores of a halted or replaced delivery, and no scoring run
    publishes on the old data meanwhile.
    """
    for key in (catalog.validation_report(dataset, ds), catalog.validation_html(dataset, ds)):
        storage.exists(key)  # a report folder that resolves out of the root fails here, before any write
    digest = built.summary.get("validated_sha256") if built.tables is not None else None
    why = "the day halted" if built.tables is None else "the day was re-validated with other content"
    from pipelines.core import locks

    with locks.validated_partition(storage, dataset, ds), held_for(storage, models, ds):
        recheck()
        for model in models:
            withdraw_stale_scores(storage, model, ds, digest, why, built.summary["report"])
        # The old partition goes first, so a failure part-way never leaves this
        # delivery's quarantine beside an earlier delivery's validated rows.
        storage.delete_prefix(catalog.validated_dir(dataset, ds))
        storage.delete_prefix(catalog.quarantine_dir(dataset, ds))
        if built.tables is not None and built.validated is not None:
            _publish(storage, dataset, ds, built.tables, built.kept, built.summary, built.validated)
        storage.write_json(catalog.validation_report(dataset, ds), built.document)
        storage.write_text(catalog.validation_html(dataset, ds), built.page)


def _publish(
    storage: Storage,
    dataset: str,
    ds: str,
    tables: Tables,
    kept: list[dict[str, Any]],
    summary: dict[str, Any],
    validated: bytes,
) -> None:
    """Write the quarantine (rows, whole files, index), then the validated rows: every output was built before."""
    storage.write_parquet(catalog.quarantine_rows(dataset, ds), tables.quarantine)
    for k in kept:
        if k["_data"] is not None:
            storage.write_bytes(catalog.quarantine_file(dataset, ds, k["file"]), k["_data"])
    storage.write_json(catalog.quarantine_index(dataset, ds), summary["quarantined_files"])
    storage.write_bytes(catalog.validated_file(dataset, ds), validated)


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
