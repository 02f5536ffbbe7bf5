"""Publishing: the committed chunks become one Parquet file that replaces the partition in one atomic step.

The file is replaced first (a rename locally, a completed multipart upload on
S3), then ``_manifest.json`` beside it describes it, and the plan is marked
published. A reader globbing ``scores/<model>/*/*.parquet`` sees the previous
complete partition or the new one, never a mix, a part or a duplicate. Same
input and same version give the same bytes.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import tempfile
from typing import TYPE_CHECKING, Any

from pipelines.core import catalog, hooks
from pipelines.core.errors import MissingInput, PlanConflict
from pipelines.core.partitions import ds_str
from pipelines.scoring.chunks import read_chunk
from pipelines.scoring.plan import committed_chunks, current_plan

if TYPE_CHECKING:
    from pipelines.core.config import ProjectConfig
    from pipelines.core.storage import Storage

log = logging.getLogger(__name__)


def _assemble(project: ProjectConfig, ds: str, plan: dict, committed: dict, storage: Storage, out_path: str) -> int:
    """Stream the committed chunks, checksums verified, into one Parquet file (a row group per chunk)."""
    import pyarrow.parquet as pq

    from pipelines.core.storage import sha256_file

    rows, writer = 0, None
    try:
        for c in plan["chunks"]:
            key = catalog.chunk_data(project.name, ds, plan["plan_id"], c["index"])
            with storage.local_copy(key) as chunk_path:
                if sha256_file(chunk_path) != committed[str(c["index"])]["sha256"]:
                    storage.delete(catalog.chunk_marker(project.name, ds, plan["plan_id"], c["index"]))  # uncommit
                    raise MissingInput(
                        f"chunk {c['index']} of {project.name} ds={ds} does not match its checksum; it is "
                        f"uncommitted: rerun (in Airflow, clear score_chunk) to score it again"
                    )
                table = read_chunk(chunk_path)
            if writer is None:
                writer = pq.ParquetWriter(out_path, table.schema, compression="zstd")
            writer.write_table(table, row_group_size=max(len(table), 1))
            rows += len(table)
    finally:
        if writer is not None:
            writer.close()
    return rows


def scores_manifest(project: ProjectConfig, ds: str, plan: dict, committed: dict, published: dict) -> dict[str, Any]:
    """What a published partition holds and where it came from (stamped with the publication time)."""
    pin = plan["model"]
    return {
        "model": project.name,
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


def publish(project: ProjectConfig, ds: str, plan_id: str, storage: Storage | None = None) -> dict[str, Any]:
    """Stream the plan's committed chunks into one Parquet file and replace the partition's file atomically.

    Idempotent: publishing a plan that is already published returns its manifest.

    Raises:
        PlanConflict: the plan was superseded (checked before each write), or it is
            published and its manifest is missing or damaged (score again from the plan).
        MissingInput: a chunk is not committed, or fails its checksum (it is then uncommitted).
        ConfigError: the step hook setting is invalid.
    """
    from pipelines.core.storage import get_storage, sha256_file

    hooks.check()
    ds = ds_str(ds)
    storage = storage or get_storage()
    plan = current_plan(project, ds, plan_id, storage)
    manifest_key = catalog.scores_manifest(project.name, ds)
    if plan.get("status") == "published":  # this plan's chunks are gone: only its manifest can answer
        try:
            existing = storage.read_json(manifest_key) if storage.exists(manifest_key) else None
        except ValueError:
            existing = None
        if not isinstance(existing, dict) or existing.get("plan_id") != plan_id:
            raise PlanConflict(
                f"{project.name} ds={ds}: plan {plan_id} is published but its manifest is missing or damaged; "
                "score the partition again from the plan step (--restart)"
            )
        storage.delete_prefix(catalog.plan_dir(project.name, ds, plan_id))
        return existing
    committed = committed_chunks(project, ds, plan, storage)
    missing = [c["index"] for c in plan["chunks"] if str(c["index"]) not in committed]
    if missing:
        raise MissingInput(f"cannot publish {project.name} ds={ds}: chunks {missing} are not committed")
    with tempfile.TemporaryDirectory(prefix="pipelines-publish-") as tmp:
        out_path = os.path.join(tmp, catalog.SCORES_FILE)
        rows = _assemble(project, ds, plan, committed, storage, out_path)
        if rows != plan["input"]["rows"]:
            raise MissingInput(f"{project.name} ds={ds}: {rows} scored rows for {plan['input']['rows']} input rows")
        digest = sha256_file(out_path)
        hooks.point("publish_data")
        current_plan(project, ds, plan_id, storage)  # not superseded while assembling
        output = storage.upload(catalog.scores_file(project.name, ds), out_path)
    manifest = scores_manifest(project, ds, plan, committed, {"rows": rows, "output": output, "sha256": digest})
    hooks.point("publish_manifest")
    current_plan(project, ds, plan_id, storage)
    storage.write_json(manifest_key, manifest)
    storage.write_json(
        catalog.scoring_plan(project.name, ds),
        {**plan, "status": "published", "published_at": manifest["published_at"]},
    )
    storage.delete_prefix(catalog.plan_dir(project.name, ds, plan_id))
    log.info(
        "%s ds=%s: published %d rows scored by v%s (%d chunks) to %s",
        project.name,
        ds,
        rows,
        plan["model"]["version"],
        len(plan["chunks"]),
        output,
    )
    return manifest
