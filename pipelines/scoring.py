"""Spot-safe, checkpointed batch scoring that publishes a partition exactly once.

``pipelines score --model M --ds D``:

1. **Pin.** The model version is resolved once, when a run starts (today's
   ``champion``, or with ``model_choice: as_of_partition`` the version that
   was champion on the partition's date: the newest promoted version whose
   training window ended on or before it), and recorded in the checkpoint:
   every chunk of the run, and every resume of it, uses that version even if
   the alias moves meanwhile.
2. **Plan.** Deterministic chunks of ``chunk_rows`` rows over the validated
   partition (row order as published). The plan, the pinned version and the
   input's size, row count and SHA-256 go to ``checkpoints/<model>/ds=D/manifest.json``
   (:func:`plan_run`; the batch_score DAG's ``plan`` task).
3. **Chunks.** Each chunk is read by row group (memory is bounded by the
   chunk, not the partition), scored, written as one Arrow IPC object (atomic),
   and then committed by its own marker ``<plan_id>/chunk-i.json`` (rows,
   SHA-256, host). Markers, not a shared manifest, so mapped Airflow tasks on
   several workers commit chunks of one plan without racing. A rerun after an
   interruption skips committed chunks and redoes at most the one that was in
   flight (written but not committed, or not written). SIGTERM (a spot notice)
   stops at the next chunk boundary and exits 6
   (:class:`~pipelines.errors.Interrupted`); SIGKILL at any instant leaves the
   last committed state, since every object write is atomic.
4. **Publish.** The committed chunks are streamed into one Parquet file (one
   row group per chunk) that replaces ``scores/<model>/ds=D/part-00000.parquet``
   in one atomic step (a rename locally, a completed multipart upload on S3),
   then ``_manifest.json`` beside it describes it. A reader globbing
   ``scores/<model>/*/*.parquet`` sees the previous complete partition or the
   new one, never a mix, a part or a duplicate. Same input and same version
   give the same bytes (:func:`publish`).

The CLI runs the three steps in one process (:func:`score_partition`); the
``batch_score_<model>`` DAG runs them as a plan task, one mapped task per
chunk (:func:`score_chunks`) and a publish task.

Output columns: the contract's natural key, ``row_id`` (a deterministic 64-bit
hash of the natural key), ``score`` (probability of the positive class, or
the predicted value), ``label`` (classification, at
``metrics.classification_threshold``), ``model_name``, ``model_version``,
``mlflow_run_id``, ``training_fingerprint``, ``contract_version`` (of the
scored partition) and ``ds``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import logging
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pipelines.errors import ConfigError, Interrupted, MissingInput, PlanConflict
from pipelines.partitions import ds_str
from pipelines.workers import worker_hostname

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from pipelines.config import ProjectConfig
    from pipelines.storage import Storage

log = logging.getLogger(__name__)

OUTPUT_FILE = "part-00000.parquet"
PUBLIC_MANIFEST = "_manifest.json"
CHECKPOINT_FILE = "manifest.json"
CHOICES = ("current", "as_of_partition")
MAX_CHUNKS = 1000


class NoModel(MissingInput):
    """No version to score with (no champion, or none as of the partition's date)."""


# ---- pinning the model


def pin_model(project: ProjectConfig, ds: str, choice: str) -> dict[str, Any]:
    """The version this run scores with, resolved once, and what traces it."""
    from pipelines.tracking import CHAMPION, alias_version, client

    if choice not in CHOICES:
        raise ConfigError(f"model choice {choice!r} is not one of {CHOICES}")
    c = client()
    if choice == "current":
        mv = alias_version(c, project.name, CHAMPION)  # an outage raises (and the task retries)
        if mv is None:
            raise NoModel(f"{project.name}: no '{CHAMPION}' to score with (promote a version first)")
    else:
        promoted = []
        for v in c.search_model_versions(f"name='{project.name}'"):
            tags = v.tags or {}
            end = tags.get("holdout_window", "").partition("..")[2]
            # Promoted by the gate, window ended by the day, and not rolled back as bad since.
            if tags.get("gate_decision") == "promoted" and "rolled_back" not in tags and end and end <= ds:
                promoted.append((end, int(v.version), v))
        if not promoted:
            raise NoModel(
                f"{project.name}: no version was champion on {ds} (none promoted, and not rolled back, "
                f"with a window ending by then)"
            )
        mv = max(promoted, key=lambda t: (t[0], t[1]))[2]
    tags = mv.tags or {}
    return {
        "name": project.name,
        "version": str(mv.version),
        "run_id": mv.run_id,
        "uri": f"models:/{project.name}/{mv.version}",
        "choice": choice,
        "training_fingerprint": tags.get("data_fingerprint", ""),
        "training_window": tags.get("training_window", ""),
        "training_contract_version": tags.get("contract_version", ""),
        "pinned_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


# ---- the plan


def plan_chunks(num_rows: int, chunk_rows: int) -> list[dict[str, int]]:
    """Deterministic chunks: ``[{"index", "start", "rows"}]`` covering ``num_rows`` in order (at least one)."""
    if chunk_rows < 1:
        raise ConfigError("chunk_rows must be positive")
    if num_rows == 0:
        return [{"index": 0, "start": 0, "rows": 0}]  # an empty partition still publishes (an empty file)
    return [
        {"index": i, "start": start, "rows": min(chunk_rows, num_rows - start)}
        for i, start in enumerate(range(0, num_rows, chunk_rows))
    ]


def _key(kind: str, project: ProjectConfig, ds: str, *parts: str) -> str:
    from pipelines.storage import partition_key

    return partition_key(kind, project.name, ds, *parts)


def manifest_key(project: ProjectConfig, ds: str) -> str:
    """``scores/<model>/ds=D/_manifest.json``: what a published partition holds, and where it came from."""
    return _key("scores", project, ds, PUBLIC_MANIFEST)


def _chunk_key(project: ProjectConfig, ds: str, plan_id: str, index: int) -> str:
    return _key("checkpoints", project, ds, plan_id, f"chunk-{index:05d}.arrow")


def _write_chunk(table: pa.Table, path: str) -> None:
    """A committed chunk is an Arrow IPC file (LZ4): a checkpoint, written and read back at near memory speed.

    Only the published file is Parquet (zstd), encoded once, at publish.
    """
    import pyarrow as pa

    options = pa.ipc.IpcWriteOptions(compression="lz4")
    with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, table.schema, options=options) as writer:
        writer.write_table(table)


def _read_chunk(path: str) -> pa.Table:
    import pyarrow as pa

    with pa.memory_map(path) as source:
        return pa.ipc.open_file(source).read_all()


def _sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ---- reading a chunk with bounded memory


class _Input:
    """The validated partition as a local Parquet file, read a row range at a time.

    Memory is bounded by the chunk plus the row groups it overlaps (at most
    two whole groups when a chunk is smaller than a group); the last row
    group read is kept, so chunks read in order decode every group once,
    whatever the chunk size.
    """

    def __init__(self, path: str):
        import pyarrow.parquet as pq

        self.file = pq.ParquetFile(path)
        meta = self.file.metadata
        self.num_rows = meta.num_rows
        self.bounds: list[tuple[int, int]] = []  # (start, rows) per row group
        start = 0
        for i in range(meta.num_row_groups):
            rows = meta.row_group(i).num_rows
            self.bounds.append((start, rows))
            start += rows
        self._cached: tuple[int, pa.Table] | None = None

    def _group(self, i: int) -> pa.Table:
        if self._cached is None or self._cached[0] != i:
            self._cached = None  # release the previous group before decoding the next
            self._cached = (i, self.file.read_row_group(i))
        return self._cached[1]

    def read(self, start: int, rows: int) -> pa.Table:
        import pyarrow as pa

        end = start + rows
        parts = [
            self._group(i).slice(max(start - s, 0), min(end, s + n) - max(start, s))
            for i, (s, n) in enumerate(self.bounds)
            if s < end and s + n > start
        ]
        if not parts:
            return self.file.schema_arrow.empty_table()
        return pa.concat_tables(parts).combine_chunks()


# ---- the output


def output_table(
    project: ProjectConfig,
    rows: pd.DataFrame,
    scores: Any,
    pin: dict[str, Any],
    key: list[str],
    ds: str,
    contract_version: str,
    arrow_rows: pa.Table | None = None,
) -> pa.Table:
    """One chunk's scored rows in the published schema (key columns keep the validated file's Arrow types)."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    n = len(rows)
    ids = pd.util.hash_pandas_object(rows[key], index=False).to_numpy().view("int64") if n else np.array([], "int64")
    if arrow_rows is not None:
        cols: dict[str, Any] = {c: arrow_rows.column(c).combine_chunks() for c in key}
    else:
        cols = {c: pa.array(rows[c].to_numpy(), from_pandas=True) for c in key}
    cols["row_id"] = pa.array(ids, pa.int64())
    cols["score"] = pa.array(np.asarray(scores, dtype="float64"), pa.float64())
    if project.target.task == "classification":
        threshold = project.metrics.classification_threshold
        cols["label"] = pa.array((np.asarray(scores) >= threshold).astype("int8"), pa.int8())
    for name, value in (
        ("model_name", pin["name"]),
        ("model_version", pin["version"]),
        ("mlflow_run_id", pin["run_id"]),
        ("training_fingerprint", pin["training_fingerprint"]),
        ("contract_version", contract_version),
    ):
        cols[name] = pa.repeat(pa.scalar(value, pa.string()), n)
    cols["ds"] = pa.repeat(pa.scalar(dt.date.fromisoformat(ds), pa.date32()), n)
    return pa.table(cols)


# ---- interruption


class _StopOnSigterm:
    """SIGTERM sets a flag the chunk loop checks at each boundary (main thread only)."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def __enter__(self) -> _StopOnSigterm:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True
        log.warning("SIGTERM: stopping at the next chunk boundary")

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def _hold(point: str) -> None:
    """Fault-injection hook for the kill tests (never set in production).

    ``PIPELINES_FAULT_HOLD=point[,point]`` parks the process at that point
    (``chunk_write:<i>``, ``chunk_commit:<i>``, ``publish_data``,
    ``publish_manifest``) after printing ``HOLD <point>`` on stderr, until the
    file named by ``PIPELINES_FAULT_RELEASE`` exists (or 10 minutes pass), so
    a test can kill it, signal it or move the champion exactly there.
    """
    holds = os.environ.get("PIPELINES_FAULT_HOLD")
    if not holds or point not in holds.split(","):
        return
    print(f"HOLD {point}", file=sys.stderr, flush=True)
    release = os.environ.get("PIPELINES_FAULT_RELEASE")
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and not (release and os.path.exists(release)):
        time.sleep(0.05)


@contextlib.contextmanager
def _local_copy(storage: Storage, key: str) -> Iterator[str]:
    """A local path for an object: the file itself on local storage, a streamed download from S3."""
    from pipelines.storage import LocalStorage

    if isinstance(storage, LocalStorage):
        path = storage.local_path(key)  # no copy for local files
        if not path.is_file():
            raise MissingInput(f"not found: {storage.uri(key)}")
        yield str(path)
        return
    with tempfile.TemporaryDirectory(prefix="pipelines-") as tmp:
        path = os.path.join(tmp, os.path.basename(key))
        storage.download(key, path)
        yield path


# ---- the checkpoint
#
# checkpoints/<model>/ds=D/manifest.json           the run: plan, pinned model, input identity, status
# checkpoints/<model>/ds=D/<plan_id>/chunk-i.arrow     a scored chunk (LZ4 Arrow IPC, atomic write)
# checkpoints/<model>/ds=D/<plan_id>/chunk-i.json      its commit marker: rows, SHA-256, who scored it
#
# Only planning and publishing write the run manifest; each chunk commits by
# writing its own marker after its data. So chunks can be scored by several
# processes at once (mapped Airflow tasks on different workers) without a
# read-modify-write race, and a chunk is committed exactly when its marker exists.


def _marker_key(project: ProjectConfig, ds: str, plan_id: str, index: int) -> str:
    return _key("checkpoints", project, ds, plan_id, f"chunk-{index:05d}.json")


def _load_checkpoint(storage: Storage, key: str) -> dict[str, Any] | None:
    if not storage.exists(key):
        return None
    try:
        return storage.read_json(key)
    except ValueError:
        return None  # a foreign or damaged file: start over (every write of ours is atomic)


def committed_chunks(project: ProjectConfig, ds: str, ckpt: dict[str, Any], storage: Storage) -> dict[str, dict]:
    """``{index: marker}`` of the plan's committed chunks (a chunk is committed when its marker exists)."""
    prefix = _key("checkpoints", project, ds, ckpt["plan_id"])
    planned = {c["index"] for c in ckpt["chunks"]}
    out: dict[str, dict] = {}
    for key in storage.list(prefix):
        name = key.rsplit("/", 1)[-1]
        if name.startswith("chunk-") and name.endswith(".json"):
            index = int(name[len("chunk-") : -len(".json")])
            if index in planned:
                out[str(index)] = storage.read_json(key)
    return out


def _input_identity(storage: Storage, key: str, path: str, rows: int) -> dict[str, Any]:
    """What a plan was made over: a re-validated partition (new content) never resumes an old plan."""
    return {
        "key": key,
        "uri": storage.uri(key),
        "bytes": os.path.getsize(path),
        "rows": rows,
        "sha256": _sha256_file(path),
    }


def _contract_version(project: ProjectConfig, ds: str, storage: Storage) -> str:
    from pipelines.validation import report_key

    report = report_key(project.dataset.name, ds)
    return storage.read_json(report)["summary"]["contract_version"] if storage.exists(report) else ""


def _input_key(project: ProjectConfig, ds: str, storage: Storage) -> str:
    from pipelines.validation import validated_key

    key = validated_key(project.dataset.name, ds)
    if not storage.exists(key):
        raise MissingInput(f"no validated partition {project.dataset.name} ds={ds} (run validate first)")
    return key


def validated_ready(project: ProjectConfig, ds: str, storage: Storage | None = None) -> str:
    """``"ready"``, ``"halted"`` (the contract halted the day: nothing will come) or ``"waiting"``."""
    from pipelines.storage import get_storage
    from pipelines.validation import report_key, validated_key

    storage = storage or get_storage()
    ds = ds_str(ds)
    report = report_key(project.dataset.name, ds)
    status = storage.read_json(report).get("summary", {}).get("status") if storage.exists(report) else None
    if status == "halted":
        return "halted"
    # Validation writes the file, then its report: ready once both are there
    # (so the plan records the contract version from the right report).
    if status == "published" and storage.exists(validated_key(project.dataset.name, ds)):
        return "ready"
    return "waiting"


def plan_run(
    project: ProjectConfig,
    ds: str,
    *,
    chunk_rows: int | None = None,
    model_choice: str | None = None,
    storage: Storage | None = None,
    restart: bool = False,
) -> dict[str, Any]:
    """Pin the model and plan the chunks, or resume the unfinished run of the same input.

    A checkpoint is resumed when it is unfinished, was planned over the same
    input (key, size, rows, SHA-256) and no option given now contradicts it; a retry
    without options keeps the interrupted run's chunking and pinned version.
    Otherwise (``restart``, a published or stale checkpoint) the version is
    pinned afresh and a new plan replaces the old checkpoint.

    Returns the run manifest plus ``committed`` (indices) and ``resumed``.
    """
    from pipelines.storage import get_storage

    ds = ds_str(ds)
    storage = storage or get_storage()
    input_key = _input_key(project, ds, storage)
    ckpt_key = _key("checkpoints", project, ds, CHECKPOINT_FILE)
    choice = model_choice or project.scoring.model_choice
    with _local_copy(storage, input_key) as path:
        input_info = _input_identity(storage, input_key, path, _Input(path).num_rows)
    ckpt = None if restart else _load_checkpoint(storage, ckpt_key)
    resumed = bool(
        ckpt
        and ckpt.get("status") == "running"
        and ckpt.get("input") == input_info
        and (chunk_rows is None or ckpt.get("chunk_rows") == chunk_rows)
        and (model_choice is None or ckpt["model"]["choice"] == choice)
    )
    if resumed:
        committed = committed_chunks(project, ds, ckpt, storage)
        log.info(
            "%s ds=%s: resuming checkpoint %s (v%s pinned %s; %d/%d chunks committed)",
            project.name,
            ds,
            ckpt["plan_id"],
            ckpt["model"]["version"],
            ckpt["model"]["pinned_at"],
            len(committed),
            len(ckpt["chunks"]),
        )
        return {**ckpt, "committed": sorted(int(i) for i in committed), "resumed": True}
    rows_per_chunk = chunk_rows or project.scoring.chunk_rows
    pin = pin_model(project, ds, choice)
    chunks = plan_chunks(input_info["rows"], rows_per_chunk)
    if len(chunks) > MAX_CHUNKS:
        raise ConfigError(
            f"{project.name} ds={ds}: {len(chunks)} chunks of {rows_per_chunk} rows; at most {MAX_CHUNKS} "
            f"(one mapped task each; Airflow maps at most 1024): raise chunk_rows"
        )
    plan_id = hashlib.sha256(f"{input_info}|{rows_per_chunk}|{pin['version']}|{time.time_ns()}".encode()).hexdigest()[
        :16
    ]
    ckpt = {
        "status": "running",
        "plan_id": plan_id,
        "model": pin,
        "input": input_info,
        "contract_version": _contract_version(project, ds, storage),
        "chunk_rows": rows_per_chunk,
        "chunks": chunks,
        "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    # The new manifest replaces the old one in one atomic write (a stale
    # process checking its plan from now on sees the conflict), then the
    # other plans' chunks go.
    storage.write_json(ckpt_key, ckpt)
    prefix = _key("checkpoints", project, ds)
    for stale in {k.split("/", 1)[0] for k in (key[len(prefix) + 1 :] for key in storage.list(prefix)) if "/" in k}:
        if stale != plan_id:
            storage.delete_prefix(f"{prefix}/{stale}")
    log.info(
        "%s ds=%s: pinned v%s (%s, run %s), planned %d chunk(s) of <= %d rows over %d rows (plan %s)",
        project.name,
        ds,
        pin["version"],
        choice,
        pin["run_id"],
        len(chunks),
        rows_per_chunk,
        input_info["rows"],
        plan_id,
    )
    return {**ckpt, "committed": [], "resumed": False}


def _current_plan(project: ProjectConfig, ds: str, plan_id: str, storage: Storage) -> dict[str, Any]:
    """The run manifest, checked to still be ``plan_id`` (another run may have re-planned the partition)."""
    ckpt = _load_checkpoint(storage, _key("checkpoints", project, ds, CHECKPOINT_FILE))
    if ckpt is None or ckpt.get("plan_id") != plan_id:
        found = ckpt.get("plan_id") if ckpt else "none"
        raise PlanConflict(
            f"{project.name} ds={ds}: plan {plan_id} is no longer current (checkpoint holds {found}); "
            f"another run re-planned the partition, rerun from the plan step"
        )
    return ckpt


def score_chunks(
    project: ProjectConfig,
    ds: str,
    plan_id: str,
    indices: list[int] | None = None,
    *,
    storage: Storage | None = None,
) -> dict[str, Any]:
    """Score and commit the plan's chunks ``indices`` (all by default), skipping committed ones.

    Safe to run in several processes at once on disjoint (or even the same)
    chunks: a chunk's data and its marker are each written atomically, and a
    chunk scored twice gives the same bytes. SIGTERM stops at the next chunk
    boundary (:class:`Interrupted`).

    Returns ``{"scored", "skipped", "rows", "chunks": [index...]}`` for this call.
    """

    from pipelines.contracts import contract_for
    from pipelines.model import predict_scores
    from pipelines.storage import get_storage

    ds = ds_str(ds)
    storage = storage or get_storage()
    ckpt = _current_plan(project, ds, plan_id, storage)
    by_index = {c["index"]: c for c in ckpt["chunks"]}
    wanted = sorted(by_index) if indices is None else list(indices)
    unknown = [i for i in wanted if i not in by_index]
    if unknown:
        raise ConfigError(f"{project.name} ds={ds}: chunks {unknown} are not in plan {plan_id}")
    if ckpt.get("status") == "published":  # another run of the same plan got there first
        return {"scored": 0, "skipped": len(wanted), "rows": 0, "chunks": []}
    committed = committed_chunks(project, ds, ckpt, storage)
    todo = [i for i in wanted if str(i) not in committed]
    pin = ckpt["model"]
    planned = len(ckpt["chunks"])
    key_cols = contract_for(project).primary_key
    result: dict[str, Any] = {"scored": 0, "skipped": len(wanted) - len(todo), "rows": 0, "chunks": todo}
    if not todo:
        return result
    with _local_copy(storage, ckpt["input"]["key"]) as path, _StopOnSigterm() as stop:
        source = _Input(path)
        if _input_identity(storage, ckpt["input"]["key"], path, source.num_rows) != ckpt["input"]:
            raise PlanConflict(
                f"{project.name} ds={ds}: the validated partition changed since plan {plan_id}; "
                "rerun from the plan step"
            )
        import mlflow.sklearn

        from pipelines.tracking import configure

        configure()
        model = mlflow.sklearn.load_model(pin["uri"])
        for i in todo:
            if stop.requested:
                raise Interrupted(
                    f"{project.name} ds={ds}: stopped on SIGTERM after {result['scored']} of {len(todo)} chunk(s) "
                    f"of this call; the checkpoint is consistent, rerun to resume"
                )
            chunk = by_index[i]
            arrow_rows = source.read(chunk["start"], chunk["rows"])
            rows = arrow_rows.to_pandas()
            scores = predict_scores(model, rows, project.target.task) if len(rows) else []
            table = output_table(project, rows, scores, pin, key_cols, ds, ckpt["contract_version"], arrow_rows)
            with tempfile.NamedTemporaryFile(suffix=".arrow") as tmp:
                _write_chunk(table, tmp.name)
                digest = _sha256_file(tmp.name)
                _hold(f"chunk_write:{i}")
                _current_plan(project, ds, plan_id, storage)  # superseded meanwhile? then stop here
                storage.upload(_chunk_key(project, ds, plan_id, i), tmp.name)
            _hold(f"chunk_commit:{i}")
            storage.write_json(
                _marker_key(project, ds, plan_id, i),
                {
                    "index": i,
                    "rows": len(table),
                    "sha256": digest,
                    "host": worker_hostname(),
                    "pid": os.getpid(),
                    "committed_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                },
            )
            result["scored"] += 1
            result["rows"] += len(table)
            log.info(
                "%s ds=%s: chunk %d/%d committed (%d rows, v%s)",
                project.name,
                ds,
                i + 1,
                planned,
                len(table),
                pin["version"],
            )
        if stop.requested:  # every chunk is committed; publishing is left to the rerun
            raise Interrupted(
                f"{project.name} ds={ds}: stopped on SIGTERM after the last chunk; the checkpoint is "
                f"complete, rerun to publish"
            )
    return result


def score_partition(
    project: ProjectConfig,
    ds: str,
    *,
    chunk_rows: int | None = None,
    model_choice: str | None = None,
    storage: Storage | None = None,
    restart: bool = False,
) -> dict[str, Any]:
    """Plan (or resume), score every chunk and publish one partition: what ``pipelines score`` runs.

    Returns the public manifest plus ``planned``, ``committed``, ``skipped``
    and ``scored`` chunk counts for this invocation.

    Raises:
        MissingInput: no validated partition, or no model to score with.
        Interrupted: SIGTERM arrived; the checkpoint is consistent, rerun to resume.
    """
    from pipelines.storage import get_storage

    storage = storage or get_storage()
    t0 = time.monotonic()
    plan = plan_run(project, ds, chunk_rows=chunk_rows, model_choice=model_choice, storage=storage, restart=restart)
    done = score_chunks(project, ds, plan["plan_id"], storage=storage)
    manifest = publish(project, ds, plan["plan_id"], storage)
    planned = len(plan["chunks"])
    return {
        **manifest,
        "planned": planned,
        "committed": planned,
        "skipped": done["skipped"],
        "scored": done["scored"],
        "resumed": plan["resumed"],
        "seconds": round(time.monotonic() - t0, 3),
    }


def publish(project: ProjectConfig, ds: str, plan_id: str, storage: Storage | None = None) -> dict[str, Any]:
    """Stream the plan's committed chunks into one Parquet file and replace the partition's file atomically.

    Idempotent: publishing a plan that is already published returns its manifest.
    """
    import pyarrow.parquet as pq

    from pipelines.storage import get_storage

    ds = ds_str(ds)
    storage = storage or get_storage()
    ckpt = _current_plan(project, ds, plan_id, storage)
    public = manifest_key(project, ds)
    if ckpt.get("status") == "published":
        existing = _load_checkpoint(storage, public)
        if existing and existing.get("plan_id") == plan_id:
            storage.delete_prefix(_key("checkpoints", project, ds, plan_id))
            return existing
    chunks = ckpt["chunks"]
    committed = committed_chunks(project, ds, ckpt, storage)
    missing = [c["index"] for c in chunks if str(c["index"]) not in committed]
    if missing:
        raise MissingInput(f"cannot publish {project.name} ds={ds}: chunks {missing} are not committed")
    out_key = _key("scores", project, ds, OUTPUT_FILE)
    rows = 0
    with tempfile.TemporaryDirectory(prefix="pipelines-publish-") as tmp:
        out_path = os.path.join(tmp, OUTPUT_FILE)
        writer = None
        try:
            for c in chunks:
                meta = committed[str(c["index"])]
                with _local_copy(storage, _chunk_key(project, ds, plan_id, c["index"])) as chunk_path:
                    if _sha256_file(chunk_path) != meta["sha256"]:
                        storage.delete(_marker_key(project, ds, plan_id, c["index"]))  # uncommit it
                        raise MissingInput(
                            f"chunk {c['index']} of {project.name} ds={ds} does not match its checksum; it is "
                            f"uncommitted: rerun (in Airflow, clear score_chunk) to score it again"
                        )
                    table = _read_chunk(chunk_path)
                if writer is None:
                    writer = pq.ParquetWriter(out_path, table.schema, compression="zstd")
                writer.write_table(table, row_group_size=max(len(table), 1))
                rows += len(table)
        finally:
            if writer is not None:
                writer.close()
        if rows != ckpt["input"]["rows"]:
            raise MissingInput(f"{project.name} ds={ds}: {rows} scored rows for {ckpt['input']['rows']} input rows")
        digest = _sha256_file(out_path)
        _hold("publish_data")
        _current_plan(project, ds, plan_id, storage)  # not superseded while assembling
        output = storage.upload(out_key, out_path)
    pin = ckpt["model"]
    manifest = {
        "model": project.name,
        "ds": ds,
        "model_version": pin["version"],
        "mlflow_run_id": pin["run_id"],
        "model_choice": pin["choice"],
        "pinned_at": pin["pinned_at"],
        "training_fingerprint": pin["training_fingerprint"],
        "training_window": pin["training_window"],
        "contract_version": ckpt.get("contract_version", ""),
        "input": ckpt["input"],
        "rows": rows,
        "chunks": len(chunks),
        "chunk_rows": ckpt["chunk_rows"],
        "chunk_sha256": [committed[str(c["index"])]["sha256"] for c in chunks],
        "output": output,
        "output_sha256": digest,
        "plan_id": plan_id,
        "published_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    _hold("publish_manifest")
    _current_plan(project, ds, plan_id, storage)
    storage.write_json(public, manifest)
    ckpt_key = _key("checkpoints", project, ds, CHECKPOINT_FILE)
    storage.write_json(ckpt_key, {**ckpt, "status": "published", "published_at": manifest["published_at"]})
    storage.delete_prefix(_key("checkpoints", project, ds, plan_id))
    log.info(
        "%s ds=%s: published %d rows scored by v%s (%d chunks) to %s",
        project.name,
        ds,
        rows,
        pin["version"],
        len(chunks),
        output,
    )
    return manifest
