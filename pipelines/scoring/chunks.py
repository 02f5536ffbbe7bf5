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
import threading
from typing import TYPE_CHECKING, Any

from pipelines.core import catalog, hooks
from pipelines.core.errors import ConditionFailed, ConfigError, Interrupted, MissingInput, PlanConflict
from pipelines.core.partitions import ds_str
from pipelines.core.workers import worker_hostname
from pipelines.scoring.plan import current_plan, lane_of

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from pipelines.core.config import ProjectConfig
    from pipelines.core.encoder import Scorer
    from pipelines.core.reasons import Reasons
    from pipelines.core.storage import Storage

log = logging.getLogger(__name__)


def chunk_bytes(table: pa.Table) -> pa.Buffer:
    """A committed chunk is an Arrow IPC file (LZ4): a checkpoint, written and read back at near memory speed.

    Serialized in memory (a chunk's size), so its SHA-256 is taken over the bytes as they are uploaded, in
    the same pass. Only the published file is Parquet (zstd), encoded once, at publish.
    """
    import pyarrow as pa

    options = pa.ipc.IpcWriteOptions(compression="lz4")
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema, options=options) as writer:
        writer.write_table(table)
    return sink.getvalue()


def read_chunk(data: Any) -> pa.Table:
    """A chunk's table from its bytes (:func:`chunk_bytes`)."""
    import pyarrow as pa

    return pa.ipc.open_file(pa.py_buffer(data)).read_all()


class ChunkReader:
    """The validated partition as Parquet (a local path, or a seekable file read in ranges), a row range at a time.

    Only the row groups a range overlaps are read (with a file read in ranges,
    only their bytes are fetched), and of them only ``columns`` (default: all).
    Memory is bounded by the chunk plus the row groups it overlaps; the last
    row group read is kept, so chunks read in order decode every group once,
    whatever the chunk size.
    """

    def __init__(self, source: Any, columns: list[str] | None = None):
        import pyarrow.parquet as pq

        # pre_buffer: a row group's column chunks are fetched in a few coalesced reads, not one per column.
        self.file = pq.ParquetFile(source, pre_buffer=True)
        # Only columns the file has: a missing one is then named by what needs it (the model's features).
        have = set(self.file.schema_arrow.names)
        self.columns = None if columns is None else [c for c in columns if c in have]
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
            self._cached = (i, self.file.read_row_group(i, columns=self.columns))
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
            schema = self.file.schema_arrow
            return schema.empty_table().select(self.columns) if self.columns is not None else schema.empty_table()
        return pa.concat_tables(parts).combine_chunks()


# ---- the output


def row_ids(rows: pa.Table, key: list[str], first_row: int = 0) -> np.ndarray:
    """``row_id`` of each row: a 64-bit hash of its natural key, or its position in the validated file.

    The hash is pandas' ``hash_pandas_object(rows[key], index=False)`` as the
    published scores have always carried it, computed without a Python object
    per value: a text column is hashed once per distinct value (Arrow's
    dictionary encoding), then each row takes its value's hash, as pandas does
    after factorizing. Without a natural key (legal in ODCS) it is the row's
    position in the validated partition file (``first_row`` is this chunk's).
    """
    import numpy as np

    n = len(rows)
    if not key:
        return np.arange(first_row, first_row + n, dtype="int64")
    if not n:
        return np.array([], "int64")
    from pandas.core.util.hashing import combine_hash_arrays

    hashes = (_column_hash(rows.column(c).combine_chunks()) for c in key)
    return combine_hash_arrays(hashes, len(key)).view("int64")


def _column_hash(values: pa.Array) -> np.ndarray:
    """One key column's part of ``hash_pandas_object``: pandas' hash of each value (uint64)."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        encoded = pc.dictionary_encode(values)
        distinct = encoded.dictionary.to_numpy(zero_copy_only=False)
        hashed = pd.util.hash_array(distinct, categorize=False)
        out = hashed.take(pc.fill_null(encoded.indices, 0).to_numpy()) if len(hashed) else np.zeros(len(values), "u8")
        if values.null_count:
            out[values.is_null().to_numpy(zero_copy_only=False)] = np.iinfo("uint64").max
        return out
    if pa.types.is_integer(values.type) and not values.null_count:
        return pd.util.hash_array(values.to_numpy())  # NumPy integers: pandas hashes them as they are
    # Other numbers, dates, ...: as the column reads into pandas.
    series = pa.table({"v": values}).to_pandas()["v"]
    return pd.util.hash_pandas_object(series, index=False).to_numpy()


def output_table(
    project: ProjectConfig,
    rows: pa.Table,
    scores: Any,
    pin: dict[str, Any],
    key: list[str],
    ds: str,
    contract_version: str,
    first_row: int = 0,
    reasons: Reasons | None = None,
) -> pa.Table:
    """One chunk's scored rows in the published schema (key columns keep the validated file's Arrow types).

    ``row_id``: :func:`row_ids`. ``reasons`` (explanations on): the reason columns after the score.
    """
    import numpy as np
    import pyarrow as pa

    from pipelines.core.contracts import SCORES_COLUMNS
    from pipelines.core.reasons import reason_columns

    added = SCORES_COLUMNS if reasons is None else (*SCORES_COLUMNS, *reason_columns(reasons.index.shape[1]))
    clash = [c for c in key if c in added]
    if clash:  # load_contract refuses such a key; never overwrite a key column silently
        raise ConfigError(f"{project.name}: natural-key columns {clash} are named like scores columns")
    n = len(rows)
    cols: dict[str, Any] = {c: rows.column(c).combine_chunks() for c in key}
    cols["row_id"] = pa.array(row_ids(rows, key, first_row), pa.int64())
    scores = np.asarray(scores, dtype="float64")
    cols["score"] = pa.array(scores, pa.float64())
    if project.target.task == "classification":
        threshold = project.metrics.classification_threshold
        cols["label"] = pa.array((scores >= threshold).astype("int8"), pa.int8())
    if reasons is not None:
        cols.update(reasons.columns())
    # The run's identity is one value per column: dictionary-encoded (one entry), it costs four bytes a row in
    # the checkpoint and is written to Parquet as the dictionary page it is, not hashed row by row.
    zeros = pa.array(np.zeros(n, dtype="int32"))
    for name, value in (
        ("model_name", pin["name"]),
        ("model_version", pin["version"]),
        ("mlflow_run_id", pin["run_id"]),
        ("training_fingerprint", pin["training_fingerprint"]),
        ("contract_version", contract_version),
    ):
        cols[name] = pa.DictionaryArray.from_arrays(zeros, pa.array([value], pa.string()))
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


def _commit(
    project: ProjectConfig, ds: str, plan_id: str, index: int, table: pa.Table, storage: Storage, lane: catalog.Lane
) -> None:
    """Write a chunk's data, then its marker: the chunk is committed exactly when the marker exists."""
    import hashlib

    data = chunk_bytes(table)
    digest = hashlib.sha256(data).hexdigest()
    hooks.point(f"chunk_write:{index}")
    current_plan(project, ds, plan_id, storage, lane)  # superseded meanwhile? then stop here
    storage.write_bytes(catalog.chunk_data(lane, ds, plan_id, index), data.to_pybytes())
    hooks.point(f"chunk_commit:{index}")
    storage.write_json(
        catalog.chunk_marker(lane, ds, plan_id, index),
        {
            "index": index,
            "rows": len(table),
            "sha256": digest,
            "host": worker_hostname(),
            "pid": os.getpid(),
            "committed_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        },
    )


def _todo(lane: catalog.Lane, ds: str, plan: dict, indices: list[int] | None, storage: Storage) -> list[int]:
    """The wanted chunks that are not committed yet (none once the plan is published)."""
    known = {c["index"] for c in plan["chunks"]}
    wanted = sorted(known) if indices is None else list(indices)
    unknown = [i for i in wanted if i not in known]
    if unknown:
        raise ConfigError(f"{lane} ds={ds}: chunks {unknown} are not in plan {plan['plan_id']}")
    if plan.get("status") == "published":  # another run of the same plan got there first
        return []
    # The markers' names only (one listing): a chunk task's requests do not grow with the plan's chunks.
    committed = catalog.committed_markers(storage, lane, ds, plan["plan_id"])
    return [i for i in wanted if i not in committed]


def score_chunks(
    project: ProjectConfig,
    ds: str,
    plan_id: str,
    indices: list[int] | None = None,
    *,
    storage: Storage | None = None,
    shadow: str | None = None,
) -> dict[str, Any]:
    """Score and commit the plan's chunks ``indices`` (all by default), skipping committed ones; ``shadow``:
    of that shadow version's lane.

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
    lane = lane_of(project, shadow)
    plan = current_plan(project, ds, plan_id, storage, lane)
    todo = _todo(lane, ds, plan, indices, storage)
    wanted = len(plan["chunks"]) if indices is None else len(indices)
    result: dict[str, Any] = {"scored": 0, "skipped": wanted - len(todo), "rows": 0, "chunks": todo}
    if not todo:
        return result
    by_index = {c["index"]: c for c in plan["chunks"]}
    key_cols = contract_for(project).primary_key
    pin = plan["model"]
    changed = PlanConflict(
        f"{lane} ds={ds}: the validated partition changed since plan {plan_id}; rerun from the plan step"
    )
    try:
        # The version planned, or a conflict: the file is read in ranges of that version only.
        opened = storage.open_version(plan["input"]["key"], plan["input"].get("version", ""))
    except (ConditionFailed, MissingInput):
        raise changed from None
    from pipelines.core.encoder import Scorer
    from pipelines.core.model_cache import load_version

    with opened as fh, StopOnSigterm() as stop:
        scorer = Scorer(load_version(pin["name"], pin["version"], pin["run_id"]), project.target.task)
        try:
            source = ChunkReader(_native(fh), _columns_read(scorer, key_cols))
        except ConditionFailed:
            raise changed from None
        if source.num_rows != plan["input"]["rows"]:
            raise changed
        for i in todo:
            if stop.requested:
                raise Interrupted(
                    f"{lane} ds={ds}: stopped on SIGTERM after {result['scored']} of {len(todo)} chunk(s) "
                    f"of this call; the checkpoint is consistent, rerun to resume"
                )
            try:
                table = _score(project, ds, scorer, source, by_index[i], plan, key_cols)
            except ConditionFailed:  # replaced while its row groups were read
                raise changed from None
            _commit(project, ds, plan_id, i, table, storage, lane)
            result["scored"] += 1
            result["rows"] += len(table)
            n, v = len(plan["chunks"]), pin["version"]
            log.info("%s ds=%s: chunk %d/%d committed (%d rows, v%s)", lane, ds, i + 1, n, len(table), v)
        if stop.requested:  # every chunk is committed; publishing is left to the rerun
            raise Interrupted(
                f"{lane} ds={ds}: stopped on SIGTERM after the last chunk; the checkpoint is complete, rerun to publish"
            )
    return result


def _columns_read(scorer: Scorer, key: list[str]) -> list[str] | None:
    """The validated columns a chunk needs: the natural key and the model's raw inputs (``None``: all, for a
    model that does not say what it reads)."""
    from pipelines.core.model import pipeline_spec

    spec = pipeline_spec(scorer.pipeline)
    if spec is None:
        return None
    return list(dict.fromkeys([*key, *spec.raw_inputs]))


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


def _score(
    project: ProjectConfig,
    ds: str,
    scorer: Scorer,
    source: ChunkReader,
    chunk: dict[str, int],
    plan: dict[str, Any],
    key_cols: list[str],
) -> pa.Table:
    """One chunk's rows, scored, in the published schema (with reasons when the plan has explanations on:
    every chunk of a plan has the same columns, whatever the configuration says meanwhile)."""
    rows = source.read(chunk["start"], chunk["rows"])
    scores = scorer(rows)
    reasons = None
    if plan.get("explanations"):
        from pipelines.core.config import ExplanationsConfig
        from pipelines.core.reasons import explain

        reasons = explain(scorer, rows, ExplanationsConfig(**plan["explanations"]))
    return output_table(
        project, rows, scores, plan["model"], key_cols, ds, plan["contract_version"], chunk["start"], reasons
    )
