"""Entry points of the retrain DAG's tasks, and how a run decides what to train on."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from pipelines.core.partitions import ds_str, partitions_from_events

log = logging.getLogger(__name__)


def training_request(
    *,
    params: Mapping[str, Any] | None = None,
    logical_date: dt.datetime | None = None,
    triggering_asset_events: Mapping[Any, Iterable[Any]] | None = None,
    run_type: str | None = None,
) -> dict[str, Any]:
    """What a retrain run trains on and why: ``{"end_ds", "trigger", "evidence", "force"}``.

    - an explicit ``end_ds`` param wins (a scientist's manual run);
    - a drift-asset event names the partition that drifted: train through it,
      trigger ``drift``, its ``extra`` is the evidence;
    - a scheduled (monthly) run trains through the day before its logical date.
    """
    params = dict(params or {})
    force = bool(params.get("force"))
    events = triggering_asset_events or {}
    extras = [
        (e.get("extra") if isinstance(e, Mapping) else getattr(e, "extra", None)) or {}
        for evs in events.values()
        for e in evs
    ]
    if params.get("end_ds"):
        trigger = "drift" if extras else ("schedule" if run_type == "scheduled" else "manual")
        return {
            "end_ds": ds_str(str(params["end_ds"])),
            "trigger": trigger,
            "evidence": {"params": params},
            "force": force,
        }
    if extras:
        end = max(partitions_from_events(events))
        evidence = {"events": [dict(x) for x in extras]}
        return {"end_ds": end, "trigger": "drift", "evidence": evidence, "force": force}
    if logical_date is None:
        from pipelines.core.errors import InvalidPartitionKey

        raise InvalidPartitionKey("cannot tell what to train on: no end_ds param, no drift event, no logical date")
    end = (logical_date.astimezone(dt.UTC).date() - dt.timedelta(days=1)).isoformat()
    trigger = "manual" if run_type == "manual" else "schedule"
    return {"end_ds": end, "trigger": trigger, "evidence": {"logical_date": logical_date.isoformat()}, "force": force}


@dataclass(frozen=True)
class TrainingOutcome:
    """What the retrain DAG's train task returns: the registered version and what it was trained on."""

    model: str
    version: str
    run_id: str
    metrics: dict[str, Any]
    fingerprint: str
    train_days: list[str]
    holdout_days: list[str]
    trigger: str
    reused: bool

    def xcom(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class GateOutcome:
    """What the retrain DAG's gate task returns; a rejection is an outcome here, not a failure."""

    model: str
    candidate: str
    champion: str | None
    passed: bool
    promoted: bool
    failed: list[str]
    notes: list[str]
    decision_uri: str | None
    shadow: str | None = None  # why it started as a shadow instead
    noop: bool = False
    holdout_rows: int | None = None
    criteria: list[dict[str, Any]] | None = None  # each criterion's name, verdict and scalar figures
    run_url: str | None = None  # the challenger's MLflow run (for the alert's link)

    def xcom(self) -> dict[str, Any]:
        return asdict(self)


def champion_event(decision: Mapping[str, Any]) -> dict[str, Any]:
    """The champion asset event's ``extra`` for a gate decision that moved the alias."""
    return {
        "model": decision["model"],
        "version": decision["candidate"],
        "previous": decision["champion"],
        "decision": decision["decision_uri"],
    }


def run_training(model: str, request: Mapping[str, Any]) -> TrainingOutcome:
    """Train a challenger for a retrain run (one call from the DAG task)."""
    from pipelines.core.config import load_project
    from pipelines.training.train import train_challenger

    r = train_challenger(
        load_project(model),
        request["end_ds"],
        trigger=request["trigger"],
        evidence=dict(request.get("evidence") or {}),
        force=bool(request.get("force")),
    )
    return TrainingOutcome(**{k: r[k] for k in TrainingOutcome.__dataclass_fields__})


def run_gate_step(model: str, version: str, trigger: str | None = None) -> GateOutcome:
    """Gate a version; a rejection is an outcome here, not a failure (the decision says why). ``trigger``:
    what made the challenger (a drift challenger may start as a shadow)."""
    from pipelines.core.config import load_project
    from pipelines.core.errors import GateRejected
    from pipelines.training.gate import run_gate

    try:
        d = run_gate(load_project(model), version, trigger=trigger)
    except GateRejected as rejected:
        d = rejected.decision or {"passed": False, "failed": [str(rejected)]}
        d["promoted"] = False
        log.warning("%s", rejected)
    d["noop"] = bool(d.get("noop"))
    d["criteria"] = [_scalars(c) for c in d.get("criteria") or []]
    d["run_url"] = _version_run_url(model, d.get("candidate"))
    return GateOutcome(**{k: d.get(k) for k in GateOutcome.__dataclass_fields__})


def _scalars(criterion: Mapping[str, Any]) -> dict[str, Any]:
    """A criterion without its per-slice tables (the decision file keeps them): small enough for XCom."""
    return {k: v for k, v in criterion.items() if v is None or isinstance(v, str | int | float | bool)}


def _version_run_url(model: str, version: Any) -> str | None:
    """The MLflow run of a registered version, as a link; None when it cannot be read (never an error)."""
    from pipelines.core.tracking import client, run_url

    try:
        return run_url(client().get_model_version(model, str(version)).run_id) if version else None
    except Exception as exc:  # noqa: BLE001 - the decision stands without its link
        log.warning("%s v%s: no run link (%s: %s)", model, version, type(exc).__name__, exc)
        return None
