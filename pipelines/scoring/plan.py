"""The scoring plan: one per partition, the single record of what a run scores, with what, in which chunks.

``checkpoints/<model>/ds=D/plan.json`` holds the pinned version, the input's
identity (key, size, rows, SHA-256), the chunking and the status (``running``
or ``published``). Only planning and publishing write it; each chunk commits
by writing its own marker beside its data (:mod:`pipelines.scoring.chunks`),
so mapped tasks on several workers never race on a shared file, and a chunk
is committed exactly when its marker exists.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import time
from typing import TYPE_CHECKING, Any

from pipelines.core import catalog
from pipelines.core.errors import ConditionFailed, ConfigError, MissingInput, NoValidatedPartition, PlanConflict
from pipelines.core.partitions import ds_str

if TYPE_CHECKING:
    from pipelines.core.config import ProjectConfig
    from pipelines.core.storage import Storage

log = logging.getLogger(__name__)

#: One mapped task per chunk, and Airflow maps at most 1024.
MAX_CHUNKS = 1000


def plan_chunks(num_rows: int, chunk_rows: int, groups: list[int] | None = None) -> list[dict[str, int]]:
    """Deterministic chunks: ``[{"index", "start", "rows"}]`` covering ``num_rows`` in order (at least one).

    With the input's row groups (``groups``: rows per group), a chunk never
    reads a byte of another chunk's: consecutive whole groups make one chunk,
    as many as bring it nearest to ``chunk_rows`` rows (so at most 1.5x
    ``chunk_rows``: 75,000 over 50,000-row groups gives chunks of 100,000,
    not 50,000), and a group larger than ``chunk_rows`` is cut into chunks of
    ``chunk_rows`` rows (which then each read that whole group: files written
    with larger groups, say before the groups were 50,000 rows, cost more
    bytes until re-validated).
    """
    if chunk_rows < 1:
        raise ConfigError("chunk_rows must be positive")
    if num_rows == 0:
        return [{"index": 0, "start": 0, "rows": 0}]  # an empty partition still publishes (an empty file)
    if groups is None or sum(groups) != num_rows:
        groups = [num_rows]
    spans: list[list[int]] = []  # [start, rows]
    whole = False  # whether the last span is whole groups (a piece of a cut group is never extended)
    start = 0
    for rows in groups:
        if rows == 0:
            continue
        if rows > chunk_rows:
            spans.extend([s, min(chunk_rows, start + rows - s)] for s in range(start, start + rows, chunk_rows))
            whole = False
        elif whole and spans[-1][1] + rows / 2 <= chunk_rows:  # the nearer of the two sizes to chunk_rows
            spans[-1][1] += rows
        else:
            spans.append([start, rows])
            whole = True
        start += rows
    return [{"index": i, "start": s, "rows": n} for i, (s, n) in enumerate(spans)]


def load_plan(storage: Storage, model: str | catalog.Lane, ds: str) -> dict[str, Any] | None:
    """The partition's plan, or ``None`` (none yet, or a foreign or damaged file: every write of ours is atomic)."""
    key = catalog.scoring_plan(model, ds)
    if not storage.exists(key):
        return None
    try:
        return storage.read_json(key)
    except ValueError:
        return None


def lane_of(project: ProjectConfig, shadow: str | None = None) -> catalog.Lane:
    """The project's champion lane, or its lane for shadow version ``shadow``."""
    return catalog.Lane(project.name, None if shadow is None else catalog.version_number(shadow))


def current_plan(
    project: ProjectConfig, ds: str, plan_id: str, storage: Storage, lane: catalog.Lane | None = None
) -> dict[str, Any]:
    """The partition's plan, checked to still be ``plan_id`` (another run may have re-planned the partition).

    Raises:
        PlanConflict: the plan was superseded.
    """
    lane = lane or lane_of(project)
    plan = load_plan(storage, lane, ds)
    if plan is None or plan.get("plan_id") != plan_id:
        found = plan.get("plan_id") if plan else "none"
        raise PlanConflict(
            f"{lane} ds={ds}: plan {plan_id} is no longer current (checkpoint holds {found}); "
            f"another run re-planned the partition, rerun from the plan step"
        )
    return plan


def committed_chunks(
    project: ProjectConfig, ds: str, plan: dict[str, Any], storage: Storage, lane: catalog.Lane | None = None
) -> dict[str, dict]:
    """``{index: marker}`` of the plan's committed chunks (a chunk is committed when its marker exists)."""
    planned = {c["index"] for c in plan["chunks"]}
    markers = catalog.committed_markers(storage, lane or lane_of(project), ds, plan["plan_id"])
    return {str(i): storage.read_json(key) for i, key in markers.items() if i in planned}


def input_identity(storage: Storage, key: str, version: str, fh: Any) -> tuple[dict[str, Any], list[int]]:
    """What a plan is made over, read from one opened version: ``(identity, rows per row group)``.

    A re-validated partition (new content) never resumes an old plan. The
    ``version`` (the object's ETag, or locally its file, size and time) is
    what each chunk task opens, reading only its own row groups; the SHA-256,
    the rows and the row groups are read here once, from that same version
    (``fh``, from :meth:`~pipelines.core.storage.Storage.open_version`), so
    they are the bytes every chunk task reads.
    """

    from pipelines.scoring.chunks import ChunkReader

    digest, size = hashlib.sha256(), 0
    fh.seek(0)
    for block in iter(lambda: fh.read(8 << 20), b""):
        digest.update(block)
        size += len(block)
    reader = ChunkReader(fh)
    identity = {
        "key": key,
        "uri": storage.uri(key),
        "bytes": size,
        "rows": reader.num_rows,
        "sha256": digest.hexdigest(),
        "version": version,
    }
    return identity, [rows for _, rows in reader.bounds]


def _contract_version(project: ProjectConfig, ds: str, storage: Storage) -> str:
    report = catalog.validation_report(project.dataset.name, ds)
    return storage.read_json(report)["summary"]["contract_version"] if storage.exists(report) else ""


def validated_ready(project: ProjectConfig, ds: str, storage: Storage | None = None) -> str:
    """``"ready"``, ``"halted"`` (the contract halted the day: nothing will come) or ``"waiting"``."""
    from pipelines.core.storage import get_storage

    storage = storage or get_storage()
    ds = ds_str(ds)
    report = catalog.validation_report(project.dataset.name, ds)
    status = storage.read_json(report).get("summary", {}).get("status") if storage.exists(report) else None
    if status == "halted":
        return "halted"
    # Validation writes the file, then its report: ready once both are there
    # (so the plan records the contract version from the right report).
    if status == "published" and storage.exists(catalog.validated_file(project.dataset.name, ds)):
        return "ready"
    return "waiting"


def explanations_of(project: ProjectConfig) -> dict[str, Any] | None:
    """The project's explanations settings as a plan records them (``None``: off)."""
    cfg = project.scoring.explanations
    return None if cfg is None else cfg.model_dump()


def _check_reason_names(project: ProjectConfig) -> None:
    """A natural-key column named like a reason column is refused before anything is planned."""
    cfg = project.scoring.explanations
    if cfg is None:
        return
    from pipelines.core.contracts import contract_for
    from pipelines.core.reasons import reason_columns

    clash = sorted(set(contract_for(project).primary_key) & set(reason_columns(cfg.top_k)))
    if clash:
        raise ConfigError(
            f"{project.source}: scoring.explanations adds columns named like the natural key {clash}: rename them "
            "in the contract or turn explanations off"
        )


def _resumable(
    plan: dict[str, Any] | None,
    input_info: dict,
    chunk_rows: int | None,
    choice: str | None,
    explanations: dict[str, Any] | None = None,
) -> bool:
    """Whether an existing plan is resumed (pure): unfinished, same input, same explanations (a plan's chunks
    all have one schema), and no option contradicts it."""
    return bool(
        plan
        and plan.get("status") == "running"
        and plan.get("input") == input_info
        and plan.get("explanations") == explanations
        and (chunk_rows is None or plan.get("chunk_rows") == chunk_rows)
        and (choice is None or plan["model"]["choice"] == choice)
    )


def _with_version(
    storage: Storage, lane: catalog.Lane, ds: str, plan: dict[str, Any] | None, input_info: dict[str, Any]
) -> dict[str, Any] | None:
    """A plan made before plans recorded their input's version, given the version when its input is the same
    bytes (key, size, rows, SHA-256), so an interrupted run resumes across the upgrade."""
    if not plan or "version" in plan.get("input", {}):
        return plan
    if plan["input"] != {k: v for k, v in input_info.items() if k != "version"}:
        return plan
    from pipelines.core import locks

    upgraded = {**plan, "input": input_info}
    with locks.scores_partition(storage, lane, ds):
        if load_plan(storage, lane, ds) == plan:  # still that plan, unpublished: give it its version
            storage.write_json(catalog.scoring_plan(lane, ds), upgraded)
            return upgraded
    return plan


def plan_run(
    project: ProjectConfig,
    ds: str,
    *,
    chunk_rows: int | None = None,
    model_choice: str | None = None,
    storage: Storage | None = None,
    restart: bool = False,
    run_key: str | None = None,
    shadow: str | None = None,
) -> dict[str, Any]:
    """Pin the model and plan the chunks, or resume the unfinished run of the same input.

    ``shadow`` (a registered version number) plans the partition's shadow lane of that version instead
    of the champion's: its own plan, chunks and publication (:class:`~pipelines.core.catalog.Lane`).

    A plan is resumed when it is unfinished, was made over the same input
    (key, size, rows, SHA-256) and no option given now contradicts it; a retry
    without options keeps the interrupted run's chunking and pinned version.
    Otherwise (``restart``, a published or stale plan) the version is pinned
    afresh and a new plan replaces the old one.

    ``run_key`` (an Airflow DAG run's id) is recorded in a new plan: a retry of
    the run that made a plan finds it by that key (:func:`pipelines.scoring.plan_or_score`).

    Returns the plan plus ``committed`` (indices) and ``resumed``.

    Raises:
        NoValidatedPartition: nothing to score.
        NoChampion: no version to score with.
        ConfigError: more than :data:`MAX_CHUNKS` chunks, or an unknown choice.
    """
    from pipelines.core.storage import get_storage, version_of

    ds = ds_str(ds)
    storage = storage or get_storage()
    lane = lane_of(project, shadow)
    input_key = catalog.validated_file(project.dataset.name, ds)
    try:
        version = version_of(storage.info(input_key))
        with storage.open_version(input_key, version) as fh:
            input_info, groups = input_identity(storage, input_key, version, fh)
    except MissingInput:
        raise NoValidatedPartition(project.dataset.name, ds) from None
    except ConditionFailed:
        raise PlanConflict(
            f"{project.name} ds={ds}: the validated partition was replaced while it was planned; plan again"
        ) from None
    plan = None if restart else _with_version(storage, lane, ds, load_plan(storage, lane, ds), input_info)
    if _resumable(plan, input_info, chunk_rows, None if shadow else model_choice, explanations_of(project)):
        committed = committed_chunks(project, ds, plan, storage, lane)
        log.info(
            "%s ds=%s: resuming plan %s (v%s pinned %s; %d/%d chunks committed)",
            lane,
            ds,
            plan["plan_id"],
            plan["model"]["version"],
            plan["model"]["pinned_at"],
            len(committed),
            len(plan["chunks"]),
        )
        return {**plan, "committed": sorted(int(i) for i in committed), "resumed": True}
    _check_reason_names(project)
    rows_per_chunk = chunk_rows or project.scoring.chunk_rows
    choice = model_choice or project.scoring.model_choice
    plan = _new_plan(project, ds, input_info, rows_per_chunk, groups, choice, storage, run_key, lane)
    return {**plan, "committed": [], "resumed": False}


def _new_plan(
    project: ProjectConfig,
    ds: str,
    input_info: dict[str, Any],
    rows_per_chunk: int,
    groups: list[int],
    choice: str,
    storage: Storage,
    run_key: str | None = None,
    lane: catalog.Lane | None = None,
) -> dict[str, Any]:
    """Pin the version afresh, chunk the input, and replace the partition's plan (stale plans' chunks go)."""
    from pipelines.scoring.pin import pin_model, pin_shadow

    lane = lane or lane_of(project)
    pin = (pin_model(project, ds, choice) if lane.shadow is None else pin_shadow(project, lane.shadow)).as_dict()
    chunks = plan_chunks(input_info["rows"], rows_per_chunk, groups)
    if len(chunks) > MAX_CHUNKS:
        raise ConfigError(
            f"{lane} ds={ds}: {len(chunks)} chunks of {rows_per_chunk} rows; at most {MAX_CHUNKS} "
            f"(one mapped task each; Airflow maps at most 1024): raise chunk_rows"
        )
    seed = f"{input_info}|{rows_per_chunk}|{pin['version']}|{time.time_ns()}"
    plan = {
        "status": "running",
        "plan_id": hashlib.sha256(seed.encode()).hexdigest()[:16],
        "model": pin,
        "input": input_info,
        "contract_version": _contract_version(project, ds, storage),
        "chunk_rows": rows_per_chunk,
        "chunks": chunks,
        **({"explanations": explanations_of(project)} if explanations_of(project) else {}),
        "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        **({"run_key": run_key} if run_key else {}),
        **({"lane": "shadow"} if lane.shadow is not None else {}),
    }
    # The new plan replaces the old one in one atomic write, inside the partition's lock so that it
    # never lands between a publisher's check of its plan and its write (a stale process checking
    # its plan from now on sees the conflict); then the other plans' chunks go.
    from pipelines.core import locks

    with locks.scores_partition(storage, lane, ds):
        storage.write_json(catalog.scoring_plan(lane, ds), plan)
    for stale in catalog.plan_ids(storage, lane, ds):
        if stale != plan["plan_id"]:
            storage.delete_prefix(catalog.plan_dir(lane, ds, stale))
    log.info(
        "%s ds=%s: pinned v%s (%s, run %s), planned %d chunk(s) of <= %d rows over %d rows (plan %s)",
        lane,
        ds,
        pin["version"],
        pin["choice"],
        pin["run_id"],
        len(chunks),
        rows_per_chunk,
        input_info["rows"],
        plan["plan_id"],
    )
    return plan
