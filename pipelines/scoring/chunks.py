"""Scoring chunks: read a row range with bounded memory, score it, write it, commit it.

A chunk is scored, written as one LZ4 Arrow IPC object (atomic), and then
committed by its own marker (rows, SHA-256, worker). Several processes can
score disjoint (or even the same) chunks of one plan at once: a chunk scored
twice gives the same bytes, and its marker is written only after its data. A
rerun after an interruption skips committed chunks and redoes at most the one
that was in flight. SIGTERM (a spot notice) stops at the next chunk boundary
with :class:`~pipelines.core.errors.Interrupted` (exit 6).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import tempfile
import threading
from typing import TYPE_CHECKING, Any

from pipelines.core import catalog, hooks
from pipelines.core.errors import ConditionFailed, ConfigError, Interrupted, MissingInput, PlanConflict
from pipelines.core.partitions import ds_str
from pipelines.core.workers import worker_hostname
from pipelines.scoring.plan import current_plan

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from pipelines.core.config import ProjectConfig
    from pipelines.core.storage import Storage

log = logging.getLogger(__name__)


def write_chunk(table: pa.Table, path: str) -> None:
    """A committed chunk is an Arrow IPC file (LZ4): a checkpoint, written and read back at near memory speed.

    Only the published file is Parquet (zstd), encoded once, at publish.
    """
    import pyarrow as pa

    options = pa.ipc.IpcWriteOptions(compression="lz4")
    with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, table.schema, options=options) as writer:
        writer.write_table(table)


def read_chunk(path: str) -> pa.Table:
    import pyarrow as pa

    with pa.memory_map(path) as source:
        return pa.ipc.open_file(source).read_all()


class ChunkReader:
    """The validated partition as Parquet (a local path, or a seekable file read in ranges), a row range at a time.

    Only the row groups a range overlaps are read (with a file read in ranges,
    only their bytes are fetched). Memory is bounded by the chunk plus the row
    groups it overlaps; the last row group read is kept, so chunks read in
    order decode every group once, whatever the chunk size.
    """

    def __init__(self, source: Any):
        import pyarrow.parquet as pq

        # pre_buffer: a row group's column chunks are fetched in a few coalesced reads, not one per column.
        self.file = pq.ParquetFile(source, pre_buffer=True)
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
    first_row: int = 0,
) -> pa.Table:
    """One chunk's scored rows in the published schema (key columns keep the validated file's Arrow types).

    ``row_id`` is a 64-bit hash of the natural key; for a contract without one
    (legal in ODCS), the row's position in the validated partition file
    (``first_row`` is the chunk's first), stable for that file.
    """
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    from pipelines.core.contracts import SCORES_COLUMNS

    clash = [c for c in key if c in SCORES_COLUMNS]
    if clash:  # load_contract refuses such a key; never overwrite a key column silently
        raise ConfigError(f"{project.name}: natural-key columns {clash} are named like scores columns")
    n = len(rows)
    if not n:
        ids = np.array([], "int64")
    elif key:
        ids = pd.util.hash_pandas_object(rows[key], index=False).to_numpy().view("int64")
    else:
        ids = np.arange(first_row, first_row + n, dtype="int64")
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


class StopOnSigterm:
    """SIGTERM sets a flag the chunk loop checks at each boundary (main thread only)."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def __enter__(self) -> StopOnSigterm:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True
        log.warning("SIGTERM: stopping at the next chunk boundary")

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


# ---- scoring and committing


def _commit(project: ProjectConfig, ds: str, plan_id: str, index: int, table: pa.Table, storage: Storage) -> None:
    """Write a chunk's data, then its marker: the chunk is committed exactly when the marker exists."""
    from pipelines.core.storage import sha256_file

    with tempfile.NamedTemporaryFile(suffix=".arrow") as tmp:
        write_chunk(table, tmp.name)
        digest = sha256_file(tmp.name)
        hooks.point(f"chunk_write:{index}")
        current_plan(project, ds, plan_id, storage)  # superseded meanwhile? then stop here
        storage.upload(catalog.chunk_data(project.name, ds, plan_id, index), tmp.name)
    hooks.point(f"chunk_commit:{index}")
    storage.write_json(
        catalog.chunk_marker(project.name, ds, plan_id, index),
        {
            "index": index,
            "rows": len(table),
            "sha256": digest,
            "host": worker_hostname(),
            "pid": os.getpid(),
            "committed_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        },
    )


def _todo(project: ProjectConfig, ds: str, plan: dict, indices: list[int] | None, storage: Storage) -> list[int]:
    """The wanted chunks that are not committed yet (none once the plan is published)."""
    known = {c["index"] for c in plan["chunks"]}
    wanted = sorted(known) if indices is None else list(indices)
    unknown = [i for i in wanted if i not in known]
    if unknown:
        raise ConfigError(f"{project.name} ds={ds}: chunks {unknown} are not in plan {plan['plan_id']}")
    if plan.get("status") == "published":  # another run of the same plan got there first
        return []
    # The markers' names only (one listing): a chunk task's requests do not grow with the plan's chunks.
    committed = catalog.committed_markers(storage, project.name, ds, plan["plan_id"])
    return [i for i in wanted if i not in committed]


def score_chunks(
    project: ProjectConfig,
    ds: str,
    plan_id: str,
    indices: list[int] | None = None,
    *,
    storage: Storage | None = None,
) -> dict[str, Any]:
    """Score and commit the plan's chunks ``indices`` (all by default), skipping committed ones.

    Returns ``{"scored", "skipped", "rows", "chunks": [index...]}`` for this call.

    Raises:
        PlanConflict: the plan was superseded, or its input changed since.
        Interrupted: SIGTERM arrived; every chunk scored so far is committed.
        ConfigError: an unknown chunk, or an invalid step hook setting.
    """
    from pipelines.core.contracts import contract_for
    from pipelines.core.storage import get_storage

    hooks.check()
    ds = ds_str(ds)
    storage = storage or get_storage()
    plan = current_plan(project, ds, plan_id, storage)
    todo = _todo(project, ds, plan, indices, storage)
    wanted = len(plan["chunks"]) if indices is None else len(indices)
    result: dict[str, Any] = {"scored": 0, "skipped": wanted - len(todo), "rows": 0, "chunks": todo}
    if not todo:
        return result
    by_index = {c["index"]: c for c in plan["chunks"]}
    key_cols = contract_for(project).primary_key
    pin = plan["model"]
    changed = PlanConflict(
        f"{project.name} ds={ds}: the validated partition changed since plan {plan_id}; rerun from the plan step"
    )
    try:
        # The version planned, or a conflict: the file is read in ranges of that version only.
        opened = storage.open_version(plan["input"]["key"], plan["input"].get("version", ""))
    except (ConditionFailed, MissingInput):
        raise changed from None
    with opened as fh, StopOnSigterm() as stop:
        try:
            source = ChunkReader(_native(fh))
        except ConditionFailed:
            raise changed from None
        if source.num_rows != plan["input"]["rows"]:
            raise changed
        model = _load_model(pin["uri"])
        for i in todo:
            if stop.requested:
                raise Interrupted(
                    f"{project.name} ds={ds}: stopped on SIGTERM after {result['scored']} of {len(todo)} chunk(s) "
                    f"of this call; the checkpoint is consistent, rerun to resume"
                )
            try:
                table = _score(project, ds, model, source, by_index[i], pin, key_cols, plan["contract_version"])
            except ConditionFailed:  # replaced while its row groups were read
                raise changed from None
            _commit(project, ds, plan_id, i, table, storage)
            result["scored"] += 1
            result["rows"] += len(table)
            log.info(
                "%s ds=%s: chunk %d/%d committed (%d rows, v%s)",
                project.name,
                ds,
                i + 1,
                len(plan["chunks"]),
                len(table),
                pin["version"],
            )
        if stop.requested:  # every chunk is committed; publishing is left to the rerun
            raise Interrupted(
                f"{project.name} ds={ds}: stopped on SIGTERM after the last chunk; the checkpoint is "
                f"complete, rerun to publish"
            )
    return result


def _native(fh: Any) -> Any:
    """A local file opened by version, as a memory map of that same open file (pyarrow reads it natively,
    without Python in the loop); any other file (a ranged S3 reader) as it is."""
    import pyarrow as pa

    try:
        fd = fh.fileno()
    except (AttributeError, OSError, ValueError):
        return fh
    path = f"/proc/self/fd/{fd}"
    return pa.memory_map(path) if os.path.exists(path) else fh


def _load_model(uri: str) -> Any:
    import mlflow.sklearn

    from pipelines.core.tracking import configure

    configure()
    return mlflow.sklearn.load_model(uri)


def _score(
    project: ProjectConfig,
    ds: str,
    model: Any,
    source: ChunkReader,
    chunk: dict[str, int],
    pin: dict[str, Any],
    key_cols: list[str],
    contract_version: str,
) -> pa.Table:
    """One chunk's rows, scored, in the published schema."""
    from pipelines.core.model import predict_scores

    arrow_rows = source.read(chunk["start"], chunk["rows"])
    rows = arrow_rows.to_pandas()
    scores = predict_scores(model, rows, project.target.task) if len(rows) else []
    return output_table(project, rows, scores, pin, key_cols, ds, contract_version, arrow_rows, chunk["start"])
