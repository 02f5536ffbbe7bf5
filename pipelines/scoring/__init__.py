"""Spot-safe, checkpointed batch scoring that publishes a partition exactly once.

``pipelines score --model M --ds D``, or the ``batch_score_<model>`` DAG:

1. **Pin** (:mod:`~pipelines.scoring.pin`). The model version is resolved
   once, when a run starts (today's ``champion``, or with ``model_choice:
   as_of_partition`` the version that was champion on the partition's date:
   the newest promoted version whose training window ended on or before it),
   and recorded in the plan: every chunk of the run, and every resume of it,
   uses that version even if the alias moves meanwhile.
2. **Plan** (:mod:`~pipelines.scoring.plan`). Deterministic chunks of
   ``chunk_rows`` rows over the validated partition (row order as published).
   The plan, the pinned version and the input's size, row count and SHA-256
   go to the partition's scoring plan (the DAG's ``plan`` task).
3. **Chunks** (:mod:`~pipelines.scoring.chunks`). Each chunk is read by row
   group (memory is bounded by the chunk, not the partition), scored, written
   as one Arrow IPC object and committed by its own marker; markers, not a
   shared file, so mapped Airflow tasks on several workers commit chunks of
   one plan without racing. A rerun skips committed chunks and redoes at most
   the one in flight; SIGTERM stops at the next chunk boundary (exit 6);
   SIGKILL at any instant leaves the last committed state.
4. **Publish** (:mod:`~pipelines.scoring.publication`). The committed chunks are
   streamed into one Parquet file that replaces the partition's file in one
   atomic step, then ``_manifest.json`` beside it describes it.

The CLI runs the four in one process (:func:`score_partition`); the DAG runs
``plan``, one mapped ``score_chunk`` task per chunk and ``publish``, except
for a partition of one chunk (a daily partition, at the default
``chunk_rows``), which its ``plan`` task scores and publishes itself
(:func:`plan_or_score`; ``publish`` then only announces it): three task
processes instead of four, with the same checkpoint, commit and publish.

Output columns: the contract's natural key, ``row_id`` (a deterministic 64-bit
hash of the natural key), ``score`` (probability of the positive class, or
the predicted value), ``label`` (classification, at
``metrics.classification_threshold``), ``model_name``, ``model_version``,
``mlflow_run_id``, ``training_fingerprint``, ``contract_version`` (of the
scored partition) and ``ds``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from pipelines.core import catalog
from pipelines.core.partitions import ds_str
from pipelines.scoring.chunks import score_chunks
from pipelines.scoring.plan import plan_run, validated_ready
from pipelines.scoring.publication import publish

if TYPE_CHECKING:
    from pipelines.core.config import ProjectConfig
    from pipelines.core.storage import Storage

__all__ = ["plan_or_score", "plan_run", "publish", "score_chunks", "score_partition", "validated_ready"]


def score_partition(
    project: ProjectConfig, ds: str, *, storage: Storage | None = None, shadow: str | None = None, **plan: Any
) -> dict[str, Any]:
    """Plan (or resume), score every chunk and publish one partition: what ``pipelines score`` runs.

    ``plan`` takes :func:`plan_run`'s options (``chunk_rows``, ``model_choice``,
    ``restart``); ``shadow`` scores the partition's lane of that shadow
    version. Returns the public manifest plus ``planned``, ``committed``,
    ``skipped`` and ``scored`` chunk counts for this invocation.

    Raises:
        MissingInput: no validated partition, or no model to score with.
        Interrupted: SIGTERM arrived; the checkpoint is consistent, rerun to resume.
    """
    from pipelines.core import hooks
    from pipelines.core.storage import get_storage

    hooks.check()  # a bad hook setting fails before the plan is touched
    storage = storage or get_storage()
    t0 = time.monotonic()
    planned_run = plan_run(project, ds, storage=storage, shadow=shadow, **plan)
    done = score_chunks(project, ds, planned_run["plan_id"], storage=storage, shadow=shadow)
    manifest = publish(project, ds, planned_run["plan_id"], storage, shadow=shadow)
    planned = len(planned_run["chunks"])
    return {
        **manifest,
        "planned": planned,
        "committed": planned,
        "skipped": done["skipped"],
        "scored": done["scored"],
        "resumed": planned_run["resumed"],
        "seconds": round(time.monotonic() - t0, 3),
    }


def plan_or_score(
    project: ProjectConfig,
    ds: str,
    *,
    storage: Storage | None = None,
    run_key: str | None = None,
    shadow: str | None = None,
    **plan: Any,
) -> dict[str, Any]:
    """Plan (or resume); a plan of one chunk is scored and published at once (the DAG's fast path).

    A daily partition is one chunk: scoring it in the process that planned it
    saves a task start-up (imports, model load) and costs nothing in
    safety: the chunk is committed and published by the same functions as a
    mapped chunk task and the publish task would, so a kill at any point is
    resumed by the retry like theirs. Larger plans are left to the mapped tasks.

    ``run_key`` names the calling run attempt (the DAG run's id and its clear
    count: a cleared run is a new attempt). The run publishes once, with the
    one version it pinned: a retry whose plan is published already (the
    attempt died after publishing, before Airflow recorded it), or whose
    publication another run has superseded since, returns that publication
    (``runs/<run_key>.json`` beside the plan) and never re-pins and publishes
    again. ``restart`` discards any plan but the run's own, so a retry resumes
    what its first try began.

    ``shadow`` (a version number) runs the partition's lane of that shadow
    version, every chunk in this process (a shadow lane is one task per
    version; its checkpoint makes a retry redo at most one chunk).

    Returns the plan (``plan_run``'s) plus ``manifest``: the publication's, or
    ``None`` when the chunks are left to the mapped tasks.
    """
    from pipelines.core.errors import PlanConflict
    from pipelines.core.storage import get_storage
    from pipelines.scoring.plan import lane_of, load_plan
    from pipelines.scoring.publication import published_manifest

    storage = storage or get_storage()
    ds = ds_str(ds)
    lane = lane_of(project, shadow)
    restart = bool(plan.pop("restart", False))
    mine = load_plan(storage, lane, ds) if run_key else None
    own = bool(mine and mine.get("run_key") == run_key)
    if run_key:
        record = catalog.scoring_run(lane, ds, run_key)
        recorded = storage.read_json(record) if storage.exists(record) else None
        if recorded is not None and shadow is not None and storage.exists(catalog.scores_withdrawal(lane, ds)):
            # A shadow lane has no publish task to notice its scores were withdrawn since (its day halted or
            # was re-validated): score the new data. Superseded by another run is no reason to publish again.
            recorded, own, restart = None, False, True
        if recorded is not None:
            return {**recorded, "resumed": True}
        if own and mine.get("status") == "published":
            try:
                manifest = published_manifest(project, ds, mine["plan_id"], storage, lane)
                return _recorded(storage, record, {**mine, "committed": [], "resumed": True, "manifest": manifest})
            except PlanConflict:  # published, then its manifest went (deleted, or withdrawn): score again
                own, restart = False, True
    planned_run = plan_run(
        project, ds, storage=storage, run_key=run_key, restart=restart and not own, shadow=shadow, **plan
    )
    if len(planned_run["chunks"]) != 1 and shadow is None:
        return {**planned_run, "manifest": None}
    score_chunks(project, ds, planned_run["plan_id"], storage=storage, shadow=shadow)
    result = {**planned_run, "manifest": publish(project, ds, planned_run["plan_id"], storage, shadow=shadow)}
    return _recorded(storage, catalog.scoring_run(lane, ds, run_key), result) if run_key else result


def _recorded(storage: Storage, key: str, result: dict[str, Any]) -> dict[str, Any]:
    """``result`` written as the run's publication record (what its retries return)."""
    storage.write_json(key, result)
    return result
