"""Publishing: the committed chunks become one Parquet file that replaces the partition in one atomic step.

The chunks are assembled into one file first (a row group per chunk, the
provenance of every row in its columns and the run's identity in the file's
footer). Then, inside the partition's lock (:func:`pipelines.core.locks.scores_partition`,
which planning and withdrawal take too), the plan is checked to still be the
partition's current plan and the validated input to still be the one it was
made over; the file replaces the partition's (a rename locally, one PUT or a
completed multipart upload on S3), ``_manifest.json`` beside it describes it,
and the plan is marked published. A stale run (its plan superseded, or its
input re-validated) therefore never overwrites a newer publish, and file and
manifest always describe the same plan once the lock is released; a reader of
the file alone finds the version, run and input checksum in its footer
(``pipelines.scores`` key-value metadata). A reader globbing
``scores/<model>/*/*.parquet`` sees the previous complete partition or the
new one, never a mix, a part or a duplicate. Same input and same version give
the same bytes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import logging
import os
import tempfile
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pipelines.core import catalog, hooks
from pipelines.core.errors import MissingInput, PlanConflict
from pipelines.core.partitions import ds_str
from pipelines.scoring.chunks import read_chunk
from pipelines.scoring.plan import committed_chunks, current_plan, lane_of

if TYPE_CHECKING:
    from pipelines.core.config import ProjectConfig
    from pipelines.core.storage import Storage

log = logging.getLogger(__name__)


#: The footer key of a published file's identity (what scored it, from which input).
FOOTER_KEY = catalog.SCORES_FOOTER_KEY


def footer_identity(project: ProjectConfig, ds: str, plan: dict) -> dict[str, Any]:
    """What a published file says about itself: deterministic for one input and version (same bytes). A
    shadow lane's file says so (``"lane": "shadow"``)."""
    pin = plan["model"]
    return {
        "model": project.name,
        "ds": ds,
        "model_version": pin["version"],
        "mlflow_run_id": pin["run_id"],
        "input_sha256": plan["input"]["sha256"],
        "contract_version": plan.get("contract_version", ""),
        **({"lane": "shadow"} if plan.get("lane") == "shadow" else {}),
    }


def read_footer_identity(path: str) -> dict[str, Any] | None:
    """The identity a published file carries in its footer (``None`` for a file from before it did)."""
    import pyarrow.parquet as pq

    return catalog.scores_footer(pq.read_metadata(path))


class _HashingFile:
    """A binary file being written that takes the SHA-256 of what goes through it (one pass, no re-read)."""

    def __init__(self, fh: Any) -> None:
        self.fh = fh
        self.hash = hashlib.sha256()
        self.closed = False

    def write(self, data: Any) -> int:
        self.hash.update(data)
        return self.fh.write(data)

    def tell(self) -> int:
        return self.fh.tell()

    def flush(self) -> None:
        self.fh.flush()

    def writable(self) -> bool:
        return True

    def close(self) -> None:
        self.closed = True


def _assemble(
    project: ProjectConfig,
    ds: str,
    plan: dict,
    committed: dict,
    storage: Storage,
    out_path: str,
    lane: catalog.Lane,
) -> tuple[int, str]:
    """Stream the committed chunks, checksums verified, into one Parquet file (a row group per chunk):
    ``(rows, the file's SHA-256)``, each chunk and the file read or written once."""
    import json

    import pyarrow.parquet as pq

    identity = json.dumps(footer_identity(project, ds, plan), sort_keys=True).encode()
    rows, writer = 0, None
    with open(out_path, "wb") as fh:
        sink = _HashingFile(fh)
        try:
            for c in plan["chunks"]:
                data = storage.read_bytes(catalog.chunk_data(lane, ds, plan["plan_id"], c["index"]))
                if hashlib.sha256(data).hexdigest() != committed[str(c["index"])]["sha256"]:
                    storage.delete(catalog.chunk_marker(lane, ds, plan["plan_id"], c["index"]))  # uncommit
                    raise MissingInput(
                        f"chunk {c['index']} of {lane} ds={ds} does not match its checksum; it is "
                        "uncommitted: rerun (in Airflow, clear score_chunk, or plan for a one-chunk day) to score "
                        "it again"
                    )
                table = _as_published(read_chunk(data))
                del data
                if writer is None:
                    # No Arrow schema in the footer: readers take the Parquet types (strings are strings,
                    # whether the chunk held them dictionary-encoded or not), as DuckDB and Spark always do.
                    # row_id and score are (nearly) all distinct: plainly encoded, not hashed into a dictionary
                    # that overflows at once.
                    # Reason contributions are floats as distinct as the scores.
                    dictionary = [
                        c
                        for c in table.column_names
                        if c not in ("row_id", "score") and not c.endswith("_contribution")
                    ]
                    writer = pq.ParquetWriter(
                        sink, table.schema, compression="zstd", store_schema=False, use_dictionary=dictionary
                    )
                writer.write_table(table, row_group_size=max(len(table), 1))
                rows += len(table)
        finally:
            if writer is not None:
                writer.add_key_value_metadata({FOOTER_KEY.decode(): identity.decode()})
                writer.close()
    return rows, sink.hash.hexdigest()


#: The run's identity columns, one value each: dictionary-encoded in chunks (plain strings in older ones).
IDENTITY_COLUMNS = ("model_name", "model_version", "mlflow_run_id", "training_fingerprint", "contract_version")


def _as_published(table: Any) -> Any:
    """A chunk with its identity columns dictionary-encoded (a chunk committed before they were is encoded
    here), so every row group of the file has one schema."""
    import pyarrow as pa
    import pyarrow.compute as pc

    for name in IDENTITY_COLUMNS:
        i = table.schema.get_field_index(name)
        if i >= 0 and not pa.types.is_dictionary(table.schema.field(i).type):
            column = pc.dictionary_encode(table.column(i)).cast(pa.dictionary(pa.int32(), pa.string()))
            table = table.set_column(i, name, column)
    return table.replace_schema_metadata(None)


def scores_manifest(project: ProjectConfig, ds: str, plan: dict, committed: dict, published: dict) -> dict[str, Any]:
    """What a published partition holds and where it came from (stamped with the publication time)."""
    pin = plan["model"]
    return {
        "model": project.name,
        "lane": "shadow" if plan.get("lane") == "shadow" else "champion",
        "ds": ds,
        "model_version": pin["version"],
        "mlflow_run_id": pin["run_id"],
        "model_choice": pin["choice"],
        "pinned_at": pin["pinned_at"],
        "training_fingerprint": pin["training_fingerprint"],
        "training_window": pin["training_window"],
        "contract_version": plan.get("contract_version", ""),
        "input": plan["input"],
        "rows": published["rows"],
        "chunks": len(plan["chunks"]),
        "chunk_rows": plan["chunk_rows"],
        "chunk_sha256": [committed[str(c["index"])]["sha256"] for c in plan["chunks"]],
        "output": published["output"],
        "output_sha256": published["sha256"],
        "plan_id": plan["plan_id"],
        "published_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def announcement(manifest: dict[str, Any]) -> dict[str, Any]:
    """What the publish task returns and puts in the scores asset event's ``extra``: the partition and its version."""
    keys = ("model", "ds", "model_version", "model_choice", "mlflow_run_id", "rows", "chunks", "output")
    return {k: manifest[k] for k in keys}


def _input_unchanged(project: ProjectConfig, ds: str, plan: dict, storage: Storage) -> None:
    """The validated partition is still the one the plan was made over (else :class:`PlanConflict`).

    Read inside the partition's lock, which validation holds while it replaces
    a day: the validation report then names the validated file's SHA-256
    (``validated_sha256``), so nothing is downloaded. A report from before it
    did, or one that does not match, is checked against the file itself.
    """
    from pipelines.core.storage import sha256_file

    key = plan["input"]["key"]
    if storage.exists(key):
        report_key = catalog.validation_report(project.dataset.name, ds)
        try:
            summary = storage.read_json(report_key).get("summary", {}) if storage.exists(report_key) else {}
        except (ValueError, AttributeError):
            summary = {}
        if isinstance(summary, dict) and summary.get("validated_sha256") == plan["input"]["sha256"]:
            return
        with storage.local_copy(key) as path:
            if sha256_file(path) == plan["input"]["sha256"]:
                return
        what = "was re-validated with other content"
    else:
        what = "is gone (halted or re-validated)"
    raise PlanConflict(
        f"{project.dataset.name} ds={ds}: the validated partition {what} since plan {plan['plan_id']}; "
        "nothing published: rerun from the plan step"
    )


def _json_bytes(obj: Any) -> bytes:
    import json

    return json.dumps(obj, indent=2, sort_keys=True, default=str).encode("utf-8")


def _clear_withdrawal(storage: Storage, model: catalog.Lane, ds: str) -> None:
    """A publication supersedes a withdrawal record of the day (removed before the manifest is written)."""
    withdrawn = catalog.scores_withdrawal(model, ds)
    if storage.exists(withdrawn):
        storage.delete(withdrawn)


def published_manifest(
    project: ProjectConfig, ds: str, plan_id: str, storage: Storage, lane: catalog.Lane | None = None
) -> dict[str, Any]:
    """The manifest of a plan that is already published (this plan's chunks are gone: only it can answer)."""
    lane = lane or lane_of(project)
    manifest_key = catalog.scores_manifest(lane, ds)
    try:
        existing = storage.read_json(manifest_key) if storage.exists(manifest_key) else None
    except ValueError:
        existing = None
    if not isinstance(existing, dict) or existing.get("plan_id") != plan_id:
        if storage.exists(catalog.scores_withdrawal(lane, ds)):
            raise PlanConflict(
                f"{lane} ds={ds}: plan {plan_id}'s scores were withdrawn (the day halted or was "
                "re-validated with other content); score the partition again from the plan step"
            )
        raise PlanConflict(
            f"{lane} ds={ds}: plan {plan_id} is published but its manifest is missing or damaged; "
            "score the partition again from the plan step (--restart)"
        )
    return existing


@contextlib.contextmanager
def _publication_lock(storage: Storage, project: ProjectConfig, lane: catalog.Lane, ds: str) -> Iterator[Any]:
    """The locks a publication holds: the lane's partition lock; for a shadow lane, the validated partition's
    lock first (validation holds it while it replaces a day and withdraws its scores, so a shadow lane, whose
    lock validation does not take, never publishes over data being replaced). The champion's lane never
    waits on a shadow's."""
    from pipelines.core import locks

    with contextlib.ExitStack() as stack:
        if lane.shadow is not None:
            stack.enter_context(locks.validated_partition(storage, project.dataset.name, ds))
        yield stack.enter_context(locks.scores_partition(storage, lane, ds))


def publish(
    project: ProjectConfig, ds: str, plan_id: str, storage: Storage | None = None, *, shadow: str | None = None
) -> dict[str, Any]:
    """Stream the plan's committed chunks into one Parquet file and replace the partition's file atomically.

    Idempotent: publishing a plan that is already published returns its manifest. ``shadow``: publish the
    plan of that shadow version's lane, to ``shadow/<model>/v=<N>/ds=D/``.

    Raises:
        PlanConflict: the plan was superseded, its validated input changed or went (checked inside the
            partition's lock, right before the file is replaced), or it is published and its manifest
            is missing or damaged (score again from the plan).
        MissingInput: a chunk is not committed, or fails its checksum (it is then uncommitted).
        LockBusy: another process held the partition's lock for the whole wait (exit 7).
        ConfigError: the step hook setting is invalid.
    """
    from pipelines.core.storage import get_storage

    hooks.check()
    ds = ds_str(ds)
    storage = storage or get_storage()
    lane = lane_of(project, shadow)
    plan = current_plan(project, ds, plan_id, storage, lane)
    if plan.get("status") == "withdrawn":
        raise PlanConflict(
            f"{lane} ds={ds}: plan {plan_id}'s scores were withdrawn (the day halted or was re-validated "
            "with other content); score the partition again from the plan step"
        )
    if plan.get("status") == "published":
        existing = published_manifest(project, ds, plan_id, storage, lane)
        storage.delete_prefix(catalog.plan_dir(lane, ds, plan_id))
        return existing
    committed = committed_chunks(project, ds, plan, storage, lane)
    missing = [c["index"] for c in plan["chunks"] if str(c["index"]) not in committed]
    if missing:
        raise MissingInput(f"cannot publish {lane} ds={ds}: chunks {missing} are not committed")
    with tempfile.TemporaryDirectory(prefix="pipelines-publish-") as tmp:
        out_path = os.path.join(tmp, catalog.SCORES_FILE)
        rows, digest = _assemble(project, ds, plan, committed, storage, out_path, lane)
        if rows != plan["input"]["rows"]:
            raise MissingInput(f"{lane} ds={ds}: {rows} scored rows for {plan['input']['rows']} input rows")
        data_key, manifest_key = catalog.scores_file(lane, ds), catalog.scores_manifest(lane, ds)
        with _publication_lock(storage, project, lane, ds) as lock:
            plan = current_plan(project, ds, plan_id, storage, lane)  # not superseded while assembling
            if plan.get("status") == "published":  # another run of this plan got there first
                _clear_withdrawal(storage, lane, ds)
                return published_manifest(project, ds, plan_id, storage, lane)
            _input_unchanged(project, ds, plan, storage)
            # The objects' versions now: each write below is conditional on them (on S3), so a holder
            # that lost the lock without knowing it (stalled past its lease) cannot overwrite a newer publish.
            fences = storage.fence(data_key), storage.fence(manifest_key)
            hooks.point("publish_data")
            lock.check()
            output = storage.replace_if(data_key, fences[0], path=out_path)
            manifest = scores_manifest(project, ds, plan, committed, {"rows": rows, "output": output, "sha256": digest})
            _clear_withdrawal(storage, lane, ds)
            hooks.point("publish_manifest")
            lock.check()
            storage.replace_if(manifest_key, fences[1], data=_json_bytes(manifest))
            storage.write_json(
                catalog.scoring_plan(lane, ds),
                {**plan, "status": "published", "published_at": manifest["published_at"]},
            )
    storage.delete_prefix(catalog.plan_dir(lane, ds, plan_id))
    log.info(
        "%s ds=%s: published %d rows scored by v%s (%d chunks) to %s",
        lane,
        ds,
        rows,
        plan["model"]["version"],
        len(plan["chunks"]),
        output,
    )
    return manifest
