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

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from pipelines.core import catalog
from pipelines.core.contracts import MALFORMED_ROW, MISSING_COLUMN, TYPE_MISMATCH, Contract, contract_for
from pipelines.core.errors import ContractHalt, DeliveryChanged, MissingInput, NothingLanded
from pipelines.core.partitions import ds_str
from pipelines.core.withdrawal import held_for, models_on, withdraw_stale_scores, withdraw_stale_shadows

if TYPE_CHECKING:
    import numpy as np

    from pipelines.core.config import DatasetConfig, ProjectConfig
    from pipelines.core.storage import Storage
    from pipelines.ingest.batches import FileRead
    from pipelines.ingest.decision import Decision, Tally
    from pipelines.ingest.landing import BadFile, Parsed, ParsedFile
    from pipelines.ingest.spill import Chunk, Duplicates

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
    """What pass 1 learned of a delivery: each file's fate, the counts, GX's results and the spilled batches."""

    files: list[FileRead]
    bad: list[BadFile]
    tally: Tally
    #: Files kept whole in quarantine/files: unreadable ones, and readable ones with lost or no records.
    kept_files: list[dict[str, Any]]
    chunks: list[Chunk]
    #: Rows each row rule flags (``unique`` rules excepted: they are counted over the day afterwards).
    counts: dict[str, int]
    #: Rows flagged by a quarantining rule other than ``unique``, and their records.
    quarantine_rows: int
    quarantine_records: int
    #: GX's record of the day: its batches' results merged (``success``, ``statistics``, ``by_rule``, ``raw``).
    gx: dict[str, Any]
    #: Unsplittable records, in file order: (file, line, text).
    malformed: list[tuple[str, int | None, str]]
    #: Every delivered column in first-seen order, mapped to its quarantine column.
    names: dict[str, str]
    missing_cols_by_file: dict[str, list[str]]
    extra_cols_by_file: dict[str, list[str]]
    #: How pass 1 was spread: ``{"count": shards, "by_shard_tasks": shards read by shard tasks}``.
    shards: dict[str, int] = field(default_factory=dict)


def validate_partition(
    source: DatasetConfig | ProjectConfig,
    ds: str,
    *,
    storage: Storage | None = None,
    contract: Contract | None = None,
    batch_rows: int | None = None,
) -> dict[str, Any]:
    """Validate one landed partition of a dataset against its data contract, once for every project reading it.

    The delivery is read in batches of about ``batch_rows`` rows, so memory
    follows the batch, not the day; the outputs and the report are the same
    whatever the batch size (pass 1 checks and spills each batch, then the
    day's duplicate keys are found over every batch, then a published day's
    files are written from the spill; see :mod:`pipelines.ingest.spill`).

    Args:
        source: the dataset (or a model project: its dataset).
        ds: partition key ``YYYY-MM-DD``.
        storage: storage to use (default: the configured root).
        contract: compiled contract (default: the dataset's).
        batch_rows: rows per batch (default: the dataset's ``ingest.batch_rows``).

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
    import tempfile

    from pipelines.core.config import dataset_of
    from pipelines.core.storage import get_storage

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
    with tempfile.TemporaryDirectory(prefix=f"validate-{dataset}-") as folder:
        built, decision = _build(storage, config, contract, ds, landed, folder, batch_rows, t0)
        # Everything is decided and built: write only if the delivery is still the one read (checked again
        # inside the scores locks, which the write may have to wait for).
        _unchanged(config, ds, storage, landed)
        recheck = lambda: _unchanged(config, ds, storage, landed)  # noqa: E731
        _write(storage, dataset, ds, built, models_on(dataset), recheck)
    from pipelines.ingest.shards import delivery_id, plan, remove_results

    rows = batch_rows or config.ingest.batch_rows
    delivered_ns = max(stamp[2] for stamp in landed.fingerprint)
    remove_results(storage, dataset, ds, delivery_id(landed, contract, rows, plan(config.ingest, landed)), delivered_ns)
    summary = built.summary
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


def _build(
    storage: Storage,
    config: DatasetConfig,
    contract: Contract,
    ds: str,
    landed: Delivery,
    folder: str,
    batch_rows: int | None,
    t0: float,
) -> tuple[Built, Decision]:
    """Read, decide and build every output of the day in ``folder``, before anything is written."""
    from pipelines.ingest.report import build_summary, render_html, report_document

    dataset = config.name
    reading = _read(storage, config, landed, contract, ds, folder, batch_rows or config.ingest.batch_rows)
    decision, dups = _decide(contract, reading, folder)
    try:
        for r in decision.rules:
            if r["id"] in decision.disagreements:
                log.warning("rule %s: GX counted %s unexpected, masks %s", r["id"], r["gx_unexpected_count"], r["rows"])
        summary = build_summary(config, contract, ds, len(landed.files), reading, decision)
        summary["ignored_files"] = landed.ignored
        summary["shards"] = reading.shards
        summary["report"] = storage.uri(catalog.validation_report(dataset, ds))
        summary["report_html"] = storage.uri(catalog.validation_html(dataset, ds))
        files = _outputs_to_publish(storage, contract, reading, dups, decision, summary, folder)
    finally:
        dups.close()
    summary["seconds"] = round(time.monotonic() - t0, 3)
    document = report_document(summary, decision, reading.files, reading.gx["raw"])
    return Built(files, reading.kept_files, summary, document, render_html(summary, decision.rules)), decision


def _decide(contract: Contract, reading: Reading, folder: str) -> tuple[Decision, Duplicates]:
    """Pass 2: the day's duplicate keys over every batch, then the decision from the merged counts."""
    from pipelines.ingest.decision import Counts, decide_counts
    from pipelines.ingest.spill import Duplicates

    dups = Duplicates(contract, reading.chunks, folder)
    try:
        counts = dict(reading.counts)
        counts.update(dups.counts)
        for rule in contract.all_rules:  # a rule no batch could count (no row read) flags nothing
            if rule.row_level:
                counts.setdefault(rule.id, 0)
        from pipelines.ingest.decision import quarantine_rule_ids

        extra_rows, extra_records = dups.quarantined(quarantine_rule_ids(contract))
        merged = Counts(
            rules=counts,
            quarantine_rows=reading.quarantine_rows + extra_rows,
            quarantine_records=reading.quarantine_records + extra_records,
        )
        return decide_counts(contract, merged, reading.gx["by_rule"], reading.tally), dups
    except BaseException:
        dups.close()
        raise


@dataclass
class Outputs:
    """A published day's files, written locally before anything is uploaded."""

    validated: str
    quarantine: str


def _outputs_to_publish(
    storage: Storage,
    contract: Contract,
    reading: Reading,
    dups: Duplicates,
    decision: Decision,
    summary: dict[str, Any],
    folder: str,
) -> Outputs | None:
    """Pass 3: the validated and quarantine files of a published day (``None`` for a halt), checked to account
    for every row and record; the summary names them and the validated file's checksum."""
    from pipelines.core.storage import sha256_file
    from pipelines.ingest.spill import write_outputs

    if decision.status != "published":
        return None
    dataset, ds, tally = summary["dataset"], summary["ds"], reading.tally
    malformed = reading.malformed if decision.quarantined_malformed else []
    v_path, q_path, v_rows, q_rows, q_records = write_outputs(
        contract,
        reading.chunks,
        dups,
        decision.quarantined,
        reading.names,
        reading.missing_cols_by_file,
        malformed,
        folder,
    )
    if q_rows != decision.quarantined_rows or v_rows + q_rows != tally.landed_rows:  # every row accounted for
        raise RuntimeError(f"row accounting broken: {v_rows} + {q_rows} != {tally.landed_rows}")
    if v_rows + q_records + tally.lost_records != tally.landed_records:  # every record accounted for
        raise RuntimeError(
            f"record accounting broken: {v_rows} + {q_records} + {tally.lost_records} lost != {tally.landed_records}"
        )
    summary["validated"] = storage.uri(catalog.validated_file(dataset, ds))
    summary["validated_sha256"] = sha256_file(v_path)  # what scoring checks its input by
    summary["quarantine"] = storage.uri(catalog.quarantine_rows(dataset, ds))
    return Outputs(v_path, q_path)


class _Batches:
    """Pass 1: groups the chunks of the delivery's files into batches of about ``rows`` rows, then checks,
    GX-validates and spills each batch.

    Small files share a batch (a day of a few files is one batch, one GX
    run). A file's chunks join a batch with other files' only once the file
    is known to be readable to its end; a large file's batches are its own,
    so an unreadable file is taken back whole, never with rows of another.
    """

    def __init__(self, contract: Contract, ds: str, folder: str, rows: int):
        from pipelines.ingest.decision import quarantine_rule_ids
        from pipelines.ingest.spill import Spill, unique_rules

        self.contract, self.ds, self.rows = contract, ds, rows
        self.spill = Spill(folder, contract)
        unique = {r.id for r in unique_rules(contract)}
        self.q_rules = [rid for rid in quarantine_rule_ids(contract) if rid not in unique]
        self._gx: Any = None
        self.next_row = 0
        self.done: list[ParsedFile] = []  # chunks of files read to their end, not yet checked
        self.current: list[ParsedFile] = []  # chunks of the file being read
        self.kept = Totals()  # what checked batches of readable files hold
        self.pending = Totals()  # what checked batches of the file being read hold
        self.start_row = 0

    def add(self, chunk: ParsedFile) -> None:
        self.current.append(chunk)
        if sum(c.num_rows for c in self.current) >= self.rows:
            self._flush_done()
            self._check(self.current, self.pending)
            self.current = []

    def file_read(self) -> None:
        """The file being read was readable to its end: its batches stand."""
        self.done.extend(self.current)
        self.current = []
        self.kept.merge(self.pending)
        self.pending = Totals()
        self.start_row = self.next_row
        if sum(c.num_rows for c in self.done) >= self.rows:
            self._flush_done()

    def file_dropped(self) -> None:
        """The file being read turned out unreadable: take back every batch of it."""
        for chunk in self.pending.chunks:
            os.remove(chunk.path)
        self.current, self.pending = [], Totals()
        self.next_row = self.start_row

    def finish(self) -> Totals:
        self._flush_done()
        return self.kept

    def suite(self) -> Any:
        if self._gx is None:
            from pipelines.ingest.rules import Expectations

            self._gx = Expectations(self.contract, self.ds)
        return self._gx

    def _flush_done(self) -> None:
        if self.done:
            self._check(self.done, self.kept)
            self.done = []
            self.start_row = self.next_row

    def _check(self, chunks: list[ParsedFile], into: Totals) -> None:
        import numpy as np

        from pipelines.ingest.landing import combine

        part = combine(chunks, self.contract)
        into.extra.update(part.extra_cols_by_file)
        into.missing.update(part.missing_cols_by_file)
        into.malformed.extend(part.malformed)
        into.names.extend(t.column_names for t in part.raw_tables)
        n = len(part.frame)
        if not n:
            return
        masks = _masks(self.contract, part, self.ds)
        q = np.zeros(n, dtype=bool)
        for rid in self.q_rules:
            if rid in masks:
                q |= masks[rid]
        for rid, mask in masks.items():
            into.counts[rid] = into.counts.get(rid, 0) + int(mask.sum())
        into.q_rows += int(q.sum())
        into.q_records += int(part.row_records[q].sum())
        into.gx_results.append(self.suite().run(part.frame))
        into.chunks.append(self.spill.add(self.next_row, part, masks, q))
        self.next_row += n


@dataclass
class Totals:
    chunks: list[Chunk] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    q_rows: int = 0
    q_records: int = 0
    gx_results: list[dict[str, Any]] = field(default_factory=list)
    malformed: list[tuple[str, int | None, str]] = field(default_factory=list)
    names: list[list[str]] = field(default_factory=list)
    missing: dict[str, list[str]] = field(default_factory=dict)
    extra: dict[str, list[str]] = field(default_factory=dict)

    def merge(self, other: Totals) -> None:
        self.chunks += other.chunks
        for rid, n in other.counts.items():
            self.counts[rid] = self.counts.get(rid, 0) + n
        self.q_rows += other.q_rows
        self.q_records += other.q_records
        self.gx_results += other.gx_results
        self.malformed += other.malformed
        self.names += other.names
        self.missing.update(other.missing)
        self.extra.update(other.extra)


@dataclass
class Part:
    """Pass 1 over some of a delivery's files (all of them, or one shard's): rows numbered from 0 in file order."""

    files: list[FileRead]
    bad: list[BadFile]
    totals: Totals
    #: Rows spilled (the next part's rows follow these in the day).
    rows: int
    #: Read by a shard task (not by the day's task).
    by_shard_task: bool = False


def read_files(
    storage: Storage, landed: Delivery, indices: list[int], contract: Contract, ds: str, folder: str, rows: int
) -> Part:
    """Pass 1 over the delivery's files at ``indices`` (in order): stream each in batches, check and spill them."""
    from pipelines.ingest.batches import FileReader
    from pipelines.ingest.landing import BadFile

    batches = _Batches(contract, ds, folder, rows)
    files: list[FileRead] = []
    bad: list[BadFile] = []
    for f in (landed.files[i] for i in indices):
        reader = FileReader(storage, f.key, f.name, contract, rows)
        offset = 0
        try:
            for chunk in reader:
                chunk.row_offset = offset
                offset += chunk.num_rows
                batches.add(chunk)
        except MissingInput:
            raise DeliveryChanged(
                f"{f.name} was removed while the delivery was read; nothing written, run again"
            ) from None
        item = reader.result
        if item is None:  # pragma: no cover - every path of the reader ends with a result
            raise RuntimeError(f"{f.name}: read without an outcome")
        if item.size >= 0 and item.size != landed.sizes.get(f.key, item.size):
            raise DeliveryChanged(f"{f.name} changed size while it was read; nothing written, run again")
        if isinstance(item, BadFile):
            batches.file_dropped()
            bad.append(item)
            log.warning("file %s quarantined: %s", item.name, item.reason)
            continue
        batches.file_read()
        files.append(item)
        if item.lost:
            log.warning("file %s: %d of %d record(s) could not be read as rows", item.name, item.lost, item.records)
        if item.empty:
            log.warning("file %s holds no records", item.name)
    totals = batches.finish()
    return Part(files, bad, totals, batches.next_row)


def _read(
    storage: Storage, config: DatasetConfig, landed: Delivery, contract: Contract, ds: str, folder: str, rows: int
) -> Reading:
    """Pass 1 over the whole delivery: each shard as its shard task left it, or read here
    (:mod:`pipelines.ingest.shards`)."""
    from pipelines.ingest.shards import parts_of_day

    return _combined(parts_of_day(storage, config, landed, contract, ds, folder, rows), contract, ds)


def _combined(parts: list[Part], contract: Contract, ds: str) -> Reading:
    """The day's pass 1 from its parts, in file order: rows renumbered across parts, counts added."""
    from pipelines.ingest.outputs import delivered_names
    from pipelines.ingest.rules import merge_gx
    from pipelines.ingest.spill import Chunk

    files: list[FileRead] = []
    bad: list[BadFile] = []
    totals = Totals()
    shift = 0
    for part in parts:
        files += part.files
        bad += part.bad
        moved = [Chunk(c.path, c.first_row + shift, c.rows, c.shift + shift) for c in part.totals.chunks]
        totals.merge(replace(part.totals, chunks=moved))
        shift += part.rows
    if not totals.gx_results:  # no row at all: GX still records its verdict on nothing
        from pipelines.ingest.landing import combine
        from pipelines.ingest.rules import Expectations

        totals.gx_results.append(Expectations(contract, ds).run(combine([], contract).frame))
    for name, cols in totals.extra.items():
        log.warning("file %s has column(s) the contract does not know, dropped: %s", name, ", ".join(cols))
    return Reading(
        files=files,
        bad=bad,
        tally=_tally(files, bad, contract),
        kept_files=_kept_files(files, bad),
        chunks=totals.chunks,
        counts=totals.counts,
        quarantine_rows=totals.q_rows,
        quarantine_records=totals.q_records,
        gx=merge_gx(contract, totals.gx_results),
        malformed=totals.malformed,
        names=delivered_names(totals.names),
        missing_cols_by_file=totals.missing,
        extra_cols_by_file=totals.extra,
        shards={"count": len(parts), "by_shard_tasks": sum(p.by_shard_task for p in parts)},
    )


def _tally(files: list[FileRead], bad: list[BadFile], contract: Contract) -> Tally:
    from pipelines.ingest.decision import Tally

    sources: dict[str, int] = {}
    spec = contract.expected_sources
    for p in files:
        source = spec.source_of(p.name) if spec else None
        if source is not None:
            sources[source] = sources.get(source, 0) + p.single_rows
    return Tally(
        rows=sum(p.num_rows for p in files),
        malformed=sum(p.malformed_rows for p in files),
        unsafe_files=sum(1 for b in bad if not b.copyable),
        good_bytes=sum(p.size for p in files),
        bad_bytes=sum(b.size for b in bad if b.size > 0),
        records=sum(p.records for p in files) + sum(b.records or 0 for b in bad),
        malformed_records=sum(p.malformed_records for p in files),
        lost_records=sum(p.lost for p in files) + sum(b.records or 0 for b in bad),
        empty_files=tuple(p.name for p in files if p.empty),
        source_records=sources,
    )


def _kept_files(files: list[FileRead], bad: list[BadFile]) -> list[dict[str, Any]]:
    """Files quarantined whole, with the rule and reason, their size and (when countable) records.

    ``_key`` is the landed file to copy into quarantine (None: its name is
    unsafe as a key, it stays in landing/ only). The copy is made after the
    delivery was checked again to be the one judged, so it is the file judged.
    """
    from pipelines.core.contracts import EMPTY_FILE, FILE_UNREADABLE, UNSAFE_FILE_NAME

    kept = [
        {
            "file": b.name,
            "rule": FILE_UNREADABLE if b.copyable else UNSAFE_FILE_NAME,
            "reason": b.reason,
            "bytes": b.size,
            "records": b.records,
            "lost_records": b.records,
            "_key": b.key if b.copyable else None,
        }
        for b in bad
    ]
    for p in files:
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
                    "_key": p.key,
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
                    "_key": p.key,
                }
            )
    return kept


def _masks(contract: Contract, batch: Parsed, ds: str) -> dict[str, np.ndarray]:
    """Every row-level rule's mask over one batch's parsed rows, parse-stage rules included, ``unique`` excepted."""
    import numpy as np

    from pipelines.ingest.rules import compute_masks

    masks = compute_masks(contract, batch.frame, ds, unique=False)
    masks[TYPE_MISMATCH] = np.zeros(len(batch.frame), dtype=bool)
    for fails in batch.type_fail_cols.values():
        masks[TYPE_MISMATCH] |= fails
    masks[MISSING_COLUMN] = batch.missing_mask
    masks[MALFORMED_ROW] = batch.multiline_mask
    return masks


@dataclass
class Built:
    """Every output of a validation, built before the first write (``files`` ``None``: halted)."""

    files: Outputs | None
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
    digest = built.summary.get("validated_sha256") if built.files is not None else None
    why = "the day halted" if built.files is None else "the day was re-validated with other content"
    from pipelines.core import locks

    with locks.validated_partition(storage, dataset, ds), held_for(storage, models, ds):
        recheck()
        for model in models:
            withdraw_stale_scores(storage, model, ds, digest, why, built.summary["report"])
            withdraw_stale_shadows(storage, model, ds, digest, why, built.summary["report"])
        # The old partition goes first, so a failure part-way never leaves this
        # delivery's quarantine beside an earlier delivery's validated rows.
        storage.delete_prefix(catalog.validated_dir(dataset, ds))
        storage.delete_prefix(catalog.quarantine_dir(dataset, ds))
        if built.files is not None:
            _publish(storage, dataset, ds, built.files, built.kept, built.summary)
        storage.write_json(catalog.validation_report(dataset, ds), built.document)
        storage.write_text(catalog.validation_html(dataset, ds), built.page)


def _publish(
    storage: Storage, dataset: str, ds: str, files: Outputs, kept: list[dict[str, Any]], summary: dict[str, Any]
) -> None:
    """Upload the quarantine (rows, whole files, index), then the validated rows: every output was built before.

    Files quarantined whole are copied from landing/, which the recheck just
    found unchanged (streamed through a local file: a large file never sits
    in memory)."""
    import tempfile

    storage.upload(catalog.quarantine_rows(dataset, ds), files.quarantine)
    for k in kept:
        if k["_key"] is not None:
            with tempfile.TemporaryDirectory(prefix="quarantine-") as tmp:
                path = os.path.join(tmp, "file")
                storage.download(k["_key"], path)
                storage.upload(catalog.quarantine_file(dataset, ds, k["file"]), path)
    storage.write_json(catalog.quarantine_index(dataset, ds), summary["quarantined_files"])
    storage.upload(catalog.validated_file(dataset, ds), files.validated)


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
