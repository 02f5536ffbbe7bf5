"""A large day validated by several tasks: each reads a shard of the delivery's files, one task decides.

Reading, checking and spilling a day (pass 1) is most of a validation's
time, and it is independent per file. A day of more landed bytes than the
dataset's ``ingest.shard_bytes`` is split into up to ``ingest.max_shards``
**shards**: runs of whole files, in delivery order, of about equal bytes
(:func:`plan`). A single file is never split: a day landed as one file is
one shard, read in bounded memory like any other.

- A **shard task** (:func:`validate_shard`, one mapped Airflow task per
  shard) reads its files exactly as the single task would (batches checked,
  GX-validated and spilled) and leaves its result in storage: the spilled
  batches under a key of its own attempt, then one JSON result naming them
  with their SHA-256, written last (the shard is done when it exists). It
  decides nothing and publishes nothing.
- The **day's task** (:func:`~pipelines.ingest.validation.validate_partition`)
  takes each shard's result, or reads the shard itself when no usable result
  is there (no shard tasks ran, as from the CLI; a result of another
  delivery; a file gone or altered), renumbers the rows across shards,
  finds duplicate keys over the whole day, decides once and publishes
  atomically, exactly as for a day read in one task: a halt anywhere
  publishes nothing, and the published files are the same bytes.

Results are keyed by the **delivery id**: a digest of the delivery's files
and marker (key, size, modification time, ETag), the shard plan, the
compiled contract's content, the batch size, the code of this package, the
versions of :data:`READER_PACKAGES` and :data:`SHARD_FORMAT`. A result of another delivery, plan or code is never
used, so a redelivery, a retuned ``max_shards`` or a deployed fix between
the shard tasks and the day's task costs a re-read, never a mix. What a
result claims is checked before use (:func:`_load`). A shard task's last
try that fails leaves its shard to the day's task
(:func:`pipelines.ingest.steps.run_shard`). The day's task removes the
decided delivery's results once it has written the day's outcome, those
written before that delivery landed, and any left untouched for
:data:`STALE_SECONDS`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import uuid
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.core import catalog
from pipelines.core.errors import DeliveryChanged, MissingInput, NothingLanded

if TYPE_CHECKING:
    from pipelines.core.config import DatasetConfig, IngestConfig, ProjectConfig
    from pipelines.core.contracts import Contract
    from pipelines.core.storage import Storage
    from pipelines.ingest.validation import Delivery, Part, Totals

log = logging.getLogger(__name__)

#: Bumped whenever a shard result's content or meaning changes: older results are then never used.
SHARD_FORMAT = 1


def plan(ingest: IngestConfig, landed: Delivery) -> list[list[int]]:
    """The delivery's files (their indices) split into shards: consecutive runs of about equal bytes.

    One shard (every file) unless the day holds more than ``shard_bytes``;
    never more shards than files or ``max_shards``; no shard is empty.
    """
    sizes = [max(0, landed.sizes.get(f.key, 0)) for f in landed.files]
    total = sum(sizes)
    count = min(ingest.max_shards, len(sizes), -(-total // ingest.shard_bytes))
    if count <= 1:
        return [list(range(len(sizes)))]
    shards: list[list[int]] = []
    current: list[int] = []
    so_far = 0
    for i, size in enumerate(sizes):
        current.append(i)
        so_far += size
        shards_left = count - len(shards) - 1
        files_left = len(sizes) - i - 1
        if shards_left and (so_far >= total * (len(shards) + 1) / count or files_left == shards_left):
            shards.append(current)
            current = []
    if current:
        shards.append(current)
    return shards


def delivery_id(landed: Delivery, contract: Contract, rows: int, shards: list[list[int]]) -> str:
    """What a shard result is valid for: this delivery, split into these shards, read under this contract's
    content in batches of ``rows`` by this code (a fix to validation never reuses what older code read)."""
    from dataclasses import replace

    identity = json.dumps(
        [
            SHARD_FORMAT,
            repr(landed.fingerprint),
            repr(replace(contract, source="")),  # the content, not where this worker keeps the file
            int(rows),
            [[landed.files[i].key for i in files] for files in shards],
            _code_digest(),
        ]
    )
    return hashlib.sha256(identity.encode("utf-8")).hexdigest()[:16]


@lru_cache(maxsize=1)
def _code_digest() -> str:
    """The ``pipelines`` package's Python sources, hashed (the same wherever the checkout lives)."""
    from importlib.metadata import PackageNotFoundError, version

    import pipelines

    root = Path(pipelines.__file__).parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        if path.is_file():  # not an editor's dangling lock link
            digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    for package in READER_PACKAGES:  # what parses, types and checks the rows
        try:
            digest.update(f"{package}=={version(package)}\0".encode())
        except PackageNotFoundError:
            digest.update(f"{package} missing\0".encode())
    return digest.hexdigest()


#: The libraries whose version changes what pass 1 reads (an upgraded parser never reuses older reads).
READER_PACKAGES = ("pyarrow", "pandas", "numpy", "great_expectations", "duckdb")


def shard_tasks(
    source: DatasetConfig | ProjectConfig, ds: str, landed: Delivery, *, contract: Contract | None = None
) -> list[dict[str, Any]]:
    """The shard tasks a delivery calls for: none for a day small enough for one task."""
    from pipelines.core.config import dataset_of
    from pipelines.core.contracts import contract_for

    config = dataset_of(source)
    shards = plan(config.ingest, landed)
    if len(shards) <= 1:
        return []
    ident = delivery_id(landed, contract or contract_for(config), config.ingest.batch_rows, shards)
    return [
        {"ds": ds, "shard": i, "of": len(shards), "delivery": ident, "files": len(files)}
        for i, files in enumerate(shards)
    ]


def validate_shard(
    source: DatasetConfig | ProjectConfig,
    ds: str,
    index: int,
    expected: str,
    *,
    storage: Storage | None = None,
    contract: Contract | None = None,
) -> dict[str, Any]:
    """Pass 1 over one shard of a day's delivery, its result left in storage for the day's task.

    ``expected`` is the delivery id the shard was planned for. When the
    delivery is no longer that one (a redelivery under way, a file gone), the
    shard does nothing: the day's task reads whatever the delivery then is.

    Returns:
        ``{"status": "done" | "already done" | "skipped", "shard", "of", "rows", "files", "batches", "reason"}``.
    """
    import tempfile

    from pipelines.core.config import dataset_of
    from pipelines.core.contracts import contract_for
    from pipelines.core.partitions import ds_str
    from pipelines.core.storage import get_storage
    from pipelines.ingest.validation import delivery, read_files

    ds = ds_str(ds)
    config = dataset_of(source)
    storage = storage or get_storage()
    contract = contract or contract_for(config)
    rows = config.ingest.batch_rows
    out: dict[str, Any] = {"shard": index, "status": "skipped", "rows": 0, "files": 0, "batches": 0}
    try:
        landed = delivery(config, ds, storage)
    except NothingLanded as exc:
        return _skipped(out, f"the delivery is not complete any more ({exc})")
    shards = plan(config.ingest, landed)
    out["of"] = len(shards)
    if delivery_id(landed, contract, rows, shards) != expected or not 0 <= index < len(shards):
        return _skipped(out, "the delivery (or the shard plan) changed since the shards were planned")
    key = catalog.shard_result(config.name, ds, expected, index)
    if _complete(storage, config.name, ds, expected, index):
        log.info("%s ds=%s shard %d of %d: already done (%s)", config.name, ds, index, len(shards), storage.uri(key))
        return {**out, "status": "already done"}
    with tempfile.TemporaryDirectory(prefix=f"validate-{config.name}-shard-") as folder:
        try:
            part = read_files(storage, landed, shards[index], contract, ds, folder, rows)
        except DeliveryChanged as exc:
            return _skipped(out, str(exc))
        document = _save(storage, config.name, ds, expected, index, part)
    out.update(status="done", rows=part.rows, files=len(shards[index]), batches=len(document["batches"]))
    log.info(
        "%s ds=%s shard %d of %d: %d file(s), %d row(s) read in %d batch(es); result %s",
        config.name,
        ds,
        index,
        len(shards),
        out["files"],
        part.rows,
        out["batches"],
        storage.uri(key),
    )
    return out


def _skipped(out: dict[str, Any], reason: str) -> dict[str, Any]:
    log.warning("shard %s: %s; nothing done here, the day's validation reads it itself", out["shard"], reason)
    return {**out, "reason": reason}


def _result(storage: Storage, dataset: str, ds: str, ident: str, index: int) -> dict[str, Any] | None:
    """A shard's result as written, or None: there is none, or it does not parse (then it is no result)."""
    try:
        doc = json.loads(storage.read_bytes(catalog.shard_result(dataset, ds, ident, index)))
    except MissingInput:
        return None
    except Exception as exc:  # noqa: BLE001 - an unreadable result is no result: the shard is read again
        log.warning(
            "%s ds=%s shard %d: its result cannot be read (%s); the shard is read again", dataset, ds, index, exc
        )
        return None
    return doc if isinstance(doc, dict) else None


def _complete(storage: Storage, dataset: str, ds: str, ident: str, index: int) -> bool:
    """Whether a shard's result is there with every batch it names (a retry redoes nothing then)."""
    doc = _result(storage, dataset, ds, ident, index)
    if doc is None:
        return False
    sizes = {i.key: i.size for i in storage.list_info(catalog.validation_shards(dataset, ds))}
    try:
        return all(sizes.get(b["key"]) == b["bytes"] for b in doc["batches"])
    except (KeyError, TypeError):
        return False


def _save(storage: Storage, dataset: str, ds: str, ident: str, index: int, part: Part) -> dict[str, Any]:
    """Upload a shard's spilled batches (under a fresh attempt id), then its result, last."""
    from pipelines.core.storage import sha256_file

    attempt = uuid.uuid4().hex[:16]
    batches = []
    for n, chunk in enumerate(part.totals.chunks):
        key = catalog.shard_batch(dataset, ds, ident, index, attempt, n)
        storage.upload(key, chunk.path)
        batches.append(
            {
                "key": key,
                "sha256": sha256_file(chunk.path),
                "bytes": os.path.getsize(chunk.path),
                "first_row": chunk.first_row,
                "rows": chunk.rows,
            }
        )
    totals = part.totals
    document = {
        "format": SHARD_FORMAT,
        "dataset": dataset,
        "ds": ds,
        "delivery": ident,
        "shard": index,
        "attempt": attempt,
        "rows": part.rows,
        "files": [asdict(f) for f in part.files],
        "bad": [asdict(b) for b in part.bad],
        "batches": batches,
        "counts": totals.counts,
        "quarantine_rows": totals.q_rows,
        "quarantine_records": totals.q_records,
        "gx_results": totals.gx_results,
        "malformed": [list(m) for m in totals.malformed],
        "names": totals.names,
        "missing": totals.missing,
        "extra": totals.extra,
    }
    data = json.dumps(document, default=_plain, sort_keys=True).encode("utf-8")
    storage.write_bytes(catalog.shard_result(dataset, ds, ident, index), data)
    return document


def _plain(value: Any) -> Any:
    """A numpy scalar as its Python value (anything else unknown is a bug: never written as text)."""
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON: {type(value).__name__}")


def _load(
    storage: Storage,
    landed: Delivery,
    contract: Contract,
    files: list[int],
    ident: str,
    index: int,
    folder: str,
    where: tuple[str, str],
) -> Part | None:
    """A shard task's result with its batches downloaded to ``folder``; None when there is none to trust.

    Nothing in a result is taken on trust that the day's task can check:
    the files it accounts for must be exactly the shard's planned files, at
    their landed sizes; its batches must sit under this shard's keys,
    match their checksums, hold the rows it says, numbered without a gap,
    and each file's rows in them must be the rows it says the file gave.
    Anything else (a missing, truncated, altered or foreign result) and the
    day's task reads the shard itself.
    """
    dataset, ds = where
    doc = _result(storage, dataset, ds, ident, index)
    if doc is None:
        return None
    try:
        return _checked(storage, landed, contract, files, (ident, index, folder), where, doc)
    except Exception as exc:  # noqa: BLE001 - whatever is wrong with it, the shard is read again
        shutil.rmtree(folder, ignore_errors=True)
        log.warning("%s ds=%s shard %d: its result cannot be used (%s); read here", dataset, ds, index, exc)
        return None


def _checked(
    storage: Storage,
    landed: Delivery,
    contract: Contract,
    files: list[int],
    shard: tuple[str, int, str],
    where: tuple[str, str],
    doc: dict[str, Any],
) -> Part:
    from pipelines.ingest.batches import FileRead
    from pipelines.ingest.landing import BadFile
    from pipelines.ingest.validation import Part

    dataset, ds = where
    ident, index, folder = shard
    if doc["format"] != SHARD_FORMAT or doc["delivery"] != ident or doc["shard"] != index:
        raise ValueError("written for another delivery, shard or format")
    read = [FileRead(**f) for f in doc["files"]]
    bad = [BadFile(**b) for b in doc["bad"]]
    planned = {landed.files[i].key: landed.files[i] for i in files}
    accounted = [f.key for f in read] + [b.key for b in bad]
    if sorted(accounted) != sorted(planned) or len(set(accounted)) != len(accounted):
        raise ValueError("it does not account for exactly the shard's files")
    for f in read:  # an unreadable file may be named otherwise (an unsafe name is shown escaped)
        if f.name != planned[f.key].name or f.size != landed.sizes.get(f.key):
            raise ValueError(f"{f.name}: not the landed file")
    totals = _batches_checked(storage, contract, doc, read, (dataset, ds, ident, index), folder)
    return Part(read, bad, totals, int(doc["rows"]), by_shard_task=True)


def _batches_checked(
    storage: Storage,
    contract: Contract,
    doc: dict[str, Any],
    read: list[Any],
    shard: tuple[str, str, str, int],
    folder: str,
) -> Totals:
    """A result's spilled batches downloaded and checked against what the result says of them: keys, checksums,
    row positions, each file's rows, every rule's count and the quarantined rows and records."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from pipelines.core.storage import sha256_file
    from pipelines.ingest.landing import output_schema
    from pipelines.ingest.spill import QUARANTINED, RECORDS, ROW, SOURCE_FILE, Chunk, typed
    from pipelines.ingest.validation import Totals

    dataset, ds, ident, index = shard
    typed_columns = {typed(f.name) for f in output_schema(contract)}
    os.makedirs(folder, exist_ok=True)
    chunks: list[Chunk] = []
    per_file = dict.fromkeys((f.name for f in read), 0)
    counts: dict[str, int] = {}
    q_rows = q_records = first = 0
    for n, b in enumerate(doc["batches"]):
        key = catalog.shard_batch(dataset, ds, ident, index, doc["attempt"], n)
        if b["key"] != key or int(b["first_row"]) != first:
            raise ValueError(f"batch {n} is not where or what this shard writes")
        path = os.path.join(folder, f"batch-{n:06d}.parquet")
        storage.download(key, path)
        if os.path.getsize(path) != b["bytes"] or sha256_file(path) != b["sha256"]:
            raise ValueError(f"batch {n} is not the one the result names")
        names = pq.read_schema(path).names
        if not typed_columns <= set(names):
            raise ValueError(f"batch {n} lacks columns every batch has")
        verdicts = [c for c in names if c.startswith("m:")]
        t = pq.read_table(path, columns=[ROW, SOURCE_FILE, RECORDS, QUARANTINED, *verdicts])
        rows = int(b["rows"])
        if t.num_rows != rows or not np.array_equal(t.column(ROW).to_numpy(), np.arange(first, first + rows)):
            raise ValueError(f"batch {n} does not hold the rows the result names")
        for item in pc.value_counts(t.column(SOURCE_FILE).cast(pa.string())).to_pylist():
            per_file[item["values"]] += item["counts"]  # a row of a file this shard did not read fails here
        q = t.column(QUARANTINED).to_numpy(zero_copy_only=False)
        q_rows += int(q.sum())
        q_records += int(t.column(RECORDS).to_numpy()[q].sum())
        for column in verdicts:
            counts[column[2:]] = counts.get(column[2:], 0) + int(pc.sum(t.column(column).cast(pa.int64())).as_py() or 0)
        chunks.append(Chunk(path, first, rows))
        first += rows
    claimed = {str(k): int(v) for k, v in dict(doc["counts"]).items()}
    if first != int(doc["rows"]) or any(per_file[f.name] != f.num_rows for f in read):
        raise ValueError("its batches do not hold its files' rows")
    if claimed != counts or (q_rows, q_records) != (int(doc["quarantine_rows"]), int(doc["quarantine_records"])):
        raise ValueError("its counts are not its batches' verdicts")
    return Totals(
        chunks=chunks,
        counts=counts,
        q_rows=q_rows,
        q_records=q_records,
        gx_results=list(doc["gx_results"]),
        malformed=[(str(m[0]), m[1], str(m[2])) for m in doc["malformed"]],
        names=[list(n) for n in doc["names"]],
        missing=dict(doc["missing"]),
        extra=dict(doc["extra"]),
    )


def parts_of_day(
    storage: Storage, config: DatasetConfig, landed: Delivery, contract: Contract, ds: str, folder: str, rows: int
) -> list[Part]:
    """Pass 1 of the whole day, shard by shard in delivery order: each shard task's result, or the shard read here."""
    from pipelines.ingest.validation import read_files

    shards = plan(config.ingest, landed)
    ident = delivery_id(landed, contract, rows, shards)
    parts = []
    for index, files in enumerate(shards):
        sub = os.path.join(folder, f"shard-{index:05d}")
        part = (
            _load(storage, landed, contract, files, ident, index, sub, (config.name, ds)) if len(shards) > 1 else None
        )
        parts.append(part or read_files(storage, landed, files, contract, ds, sub, rows))
    if len(shards) > 1:
        taken = sum(p.by_shard_task for p in parts)
        log.info(
            "%s ds=%s: %d shards, %d read by shard tasks, %d here",
            config.name,
            ds,
            len(shards),
            taken,
            len(shards) - taken,
        )
    return parts


#: Results of another delivery untouched this long are removed with a decided day's (none is still in flight).
STALE_SECONDS = 3600


def remove_results(storage: Storage, dataset: str, ds: str, decided: str, delivered_ns: int) -> None:
    """Once the day's outcome is written, the shard results that can no longer serve: the decided delivery's,
    those last written before it was delivered (``delivered_ns``: its newest file or marker; they are of an
    earlier delivery), and any other left untouched for :data:`STALE_SECONDS` (until then, a run of another
    delivery, plan or code may be writing its own)."""
    import time

    keep_after = max(delivered_ns, time.time_ns() - STALE_SECONDS * 10**9)
    for other, modified in catalog.shard_deliveries(storage, dataset, ds).items():
        if other == decided or modified < keep_after:
            storage.delete_prefix(catalog.shard_delivery_dir(dataset, ds, other))
