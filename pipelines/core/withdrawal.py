"""Scores follow their data: a day's published scores are withdrawn when the day's validated data halts
or is re-validated with other content.

Validation calls :func:`held_for` around its writes: it holds the scores
lock of every model project on the dataset (the lock scoring's planning and
publication take, :func:`pipelines.core.locks.scores_partition`), so no
scoring run can publish between the check and the new data, and withdraws
each model's scores of the day whose input is not the new validated file
(:func:`withdraw_stale_scores`), before the old data goes. A scoring run
still in flight on the old data finds its input changed at publication and
publishes nothing; a rerun scores the new data. ``_withdrawn.json`` in the
partition's folder records what was withdrawn and why (lineage shows it); a
new publication removes it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Iterator
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

from pipelines.core import catalog

if TYPE_CHECKING:
    from pipelines.core.storage import Storage

log = logging.getLogger(__name__)


def models_on(dataset: str, also: str | None = None) -> list[str]:
    """The model projects that may hold scores of ``dataset`` (plus ``also``), sorted (the lock order).

    Every config that reads the dataset, and every config file that cannot be
    read (its model may read it: its scores are checked by name, which needs
    no config). A model whose config was deleted, or now reads another
    dataset, keeps the scores it published (its history): delete its scores
    table to withdraw them.
    """
    from pipelines.core.catalog import NAME_RE
    from pipelines.core.config import load_projects

    scan = load_projects()
    names = {p.name for p in scan.projects if p.dataset.name == dataset}
    loaded = {p.name for p in scan.projects}
    for problem in scan.problems:
        stem = PurePath(problem.split(":", 1)[0]).name.removesuffix(".yaml")  # the config file's name
        if NAME_RE.fullmatch(stem) and stem not in loaded:
            log.warning("model config %s could not be read; its scores of this day are checked by name", stem)
            names.add(stem)
    return sorted(names | ({also} if also else set()))


@contextlib.contextmanager
def held_for(storage: Storage, models: list[str], ds: str) -> Iterator[None]:
    """Hold the scores lock of each model's partition ``ds`` (in sorted order: no two holders deadlock)."""
    from pipelines.core import locks

    with contextlib.ExitStack() as stack:
        for model in sorted(models):
            stack.enter_context(locks.scores_partition(storage, model, ds))
        yield


def withdraw_stale_scores(
    storage: Storage, model: str | catalog.Lane, ds: str, input_sha256: str | None, why: str, report: str
) -> dict[str, Any] | None:
    """Withdraw a day's published scores when their input is not ``input_sha256`` any more (call under the
    partition's lock). ``input_sha256`` ``None``: the day has no validated data (halted). ``model`` is
    a model's name (its champion's lane) or a :class:`~pipelines.core.catalog.Lane`.

    The file goes first (readers stop seeing it), then the manifest; ``_withdrawn.json`` records what
    was withdrawn and why. Returns that record, or ``None`` when the scores still match their input.
    """
    lane = catalog.as_lane(model)
    manifest_key = catalog.scores_manifest(lane, ds)
    data_key = catalog.scores_file(lane, ds)
    try:
        manifest = storage.read_json(manifest_key) if storage.exists(manifest_key) else None
    except ValueError:
        manifest = None
    if not isinstance(manifest, dict):
        manifest = None  # damaged: nothing proves the scores match their data, so they go
    if manifest is None and not storage.exists(data_key):
        return None
    scored_input = (manifest or {}).get("input")
    scored = scored_input.get("sha256") if isinstance(scored_input, dict) else None
    if input_sha256 is not None and scored == input_sha256:
        return None
    record = {
        "model": lane.model,
        **({"shadow": lane.shadow} if lane.shadow is not None else {}),
        "ds": ds,
        "why": why,
        "validation_report": report,
        "withdrawn_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "scored_input_sha256": scored,
        "new_input_sha256": input_sha256,
        "model_version": (manifest or {}).get("model_version"),
        "plan_id": (manifest or {}).get("plan_id"),
        "published_at": (manifest or {}).get("published_at"),
        "rows": (manifest or {}).get("rows"),
    }
    storage.write_json(catalog.scores_withdrawal(lane, ds), record)
    if storage.exists(data_key):
        storage.delete(data_key)
    if storage.exists(manifest_key):
        storage.delete(manifest_key)
    _mark_plan_withdrawn(storage, lane, ds)
    log.warning(
        "%s ds=%s: scores withdrawn (%s): v%s, %s rows, published %s",
        lane,
        ds,
        why,
        record["model_version"],
        record["rows"],
        record["published_at"],
    )
    return record


def withdraw_stale_shadows(
    storage: Storage, model: str, ds: str, input_sha256: str | None, why: str, report: str
) -> list[dict[str, Any]]:
    """:func:`withdraw_stale_scores` for each shadow lane of ``model`` that published day ``ds``, each under
    its lane's lock. Call under the validated partition's lock, which a shadow lane's publication takes
    first: no shadow publishes between this listing and the new data."""
    from pipelines.core import locks

    out = []
    for lane in catalog.shadow_lanes(storage, model, ds):
        with locks.scores_partition(storage, lane, ds):
            record = withdraw_stale_scores(storage, lane, ds, input_sha256, why, report)
        if record is not None:
            out.append(record)
    return out


def _mark_plan_withdrawn(storage: Storage, model: str | catalog.Lane, ds: str) -> None:
    """A published plan whose scores went is ``withdrawn``: a retried publish of it says so, never resumes."""
    key = catalog.scoring_plan(model, ds)
    try:
        plan = storage.read_json(key) if storage.exists(key) else None
    except ValueError:
        plan = None
    if isinstance(plan, dict) and plan.get("status") == "published":
        storage.write_json(key, {**plan, "status": "withdrawn"})
