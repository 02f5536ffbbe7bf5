"""Drift and performance monitoring of the champion, and the policy that asks for a retraining.

For one validated partition (``pipelines drift --model M --ds D``):

1. **Data drift.** Evidently 0.7 compares the partition's features with the
   champion's reference (a seeded sample of its training rows, stored with the
   version at training time as features, score and label, so nothing is
   recomputed here). Evidently picks each column's test by type and size
   unless ``drift.method`` names one; the share of drifted *monitored*
   features is the data-drift figure. Calendar-like features (day of week,
   month...) hold one value per daily partition and are left out by default.
   The score's distribution (prediction drift) and the label's (target drift)
   are reported beside them.
2. **Performance.** The flights feed carries each row's outcome, so the
   champion scores the partition and its live metrics (for classification
   also the positive and predicted-positive rates) are compared with the
   holdout baseline recorded with the version. They are also logged on the
   champion's MLflow run (step = days since 1970-01-01), for the UI's charts.
3. **Policy** (``drift`` in the model config). The partition *signals* when
   the drifted share reaches ``drift_share`` or a metric decayed beyond
   ``performance_decay``; the policy *fires* when it and the
   ``consecutive - 1`` validated partitions before it signal (hysteresis; a
   previous partition's signal is computed and stored if missing), the
   partition has ``min_rows`` rows, and no retraining (any registered
   version's training window end) or earlier firing lies within
   ``cooldown_days`` partition days. Partition days, not wall-clock days: a
   backfill of 2013 decides as the daily runs of 2013 would have, and the
   cooldown also stops a rejected drift-triggered challenger from
   re-triggering on the next partition.

Measuring is :mod:`~pipelines.monitoring.measure` (the only module that
imports Evidently, inside the function that needs it), deciding is
:mod:`~pipelines.monitoring.policy` (pure); this module reads the history,
decides, and writes the check's summary (measures, decision and its inputs)
and Evidently's HTML reports under the model's reports
(:mod:`pipelines.core.catalog`).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import TYPE_CHECKING, Any

from pipelines.core import catalog
from pipelines.core.errors import NoValidatedPartition
from pipelines.core.partitions import ds_str, metric_step
from pipelines.monitoring.measure import Champion, measure, policy_hash, window_days, window_inputs
from pipelines.monitoring.policy import decide

if TYPE_CHECKING:
    from pipelines.core.config import ProjectConfig
    from pipelines.core.storage import Storage

log = logging.getLogger(__name__)


def _stored(storage: Storage, project: ProjectConfig, ds: str) -> dict[str, Any] | None:
    key = catalog.drift_summary(project.name, ds)
    if not storage.exists(key):
        return None
    try:
        return storage.read_json(key)
    except (ValueError, OSError):
        return None


def _write(storage: Storage, project: ProjectConfig, summary: dict[str, Any], snapshots: dict[str, Any]) -> str:
    import os
    import tempfile

    ds = summary["ds"]
    summary["html_reports"] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for part, snapshot in snapshots.items():
            path = os.path.join(tmp, f"{part}.html")
            snapshot.save_html(path)
            with open(path, "rb") as fh:
                summary["html_reports"][part] = storage.write_bytes(
                    catalog.drift_html(project.name, ds, part), fh.read()
                )
    summary["html_report"] = summary["html_reports"].get("features")
    summary["report"] = storage.uri(catalog.drift_summary(project.name, ds))
    storage.write_json(catalog.drift_summary(project.name, ds), summary)
    return summary["report"]


def _history(project: ProjectConfig, ds: str, champ: Champion, storage: Storage, spec: Any) -> list[tuple[str, bool]]:
    """Signals of the ``consecutive - 1`` validated partitions before ``ds`` (computed and stored if missing)."""
    need = project.drift.consecutive - 1
    if need == 0:
        return []
    have = catalog.validated_partitions(storage, project.dataset.name)
    before = [d for d in have if d < ds][-need:]
    out = []
    for d in before:
        s = _stored(storage, project, d)
        current = (
            s
            and s.get("model_version") == champ.info["version"]
            and s.get("run_id") == champ.info["run_id"]
            and s.get("policy_hash") == policy_hash(project)
            and s.get("window_inputs")
            == window_inputs(storage, project, [w for w in window_days(project, d) if w in have])
        )
        if not current:
            fresh, snapshots = measure(project, d, champ, storage, spec)
            # Keep what was decided on that day (a firing starts a cooldown); only the signal is refreshed.
            kept = {k: s[k] for k in ("policy_fired", "reason", "decision") if s and s.get("policy_fired") is not None}
            fresh.update(
                kept or {"policy_fired": None, "reason": f"signal measured as history of {ds}; no decision for {d}"}
            )
            _write(storage, project, fresh, snapshots)
            s = fresh
        out.append((d, bool(s["signal"])))
    return out


def _last_retraining(project: ProjectConfig, ds: str) -> str | None:
    """End of the newest training window at or before ``ds`` among all registered versions."""
    from pipelines.core.tracking import client, window

    ends = [span[1] for mv in client().search_model_versions(f"name='{project.name}'") if (span := window(mv.tags))]
    return max((end for end in ends if end <= ds), default=None)


def _last_fired(project: ProjectConfig, ds: str, storage: Storage) -> str | None:
    """The newest partition before ``ds`` (within the cooldown) on which the policy fired."""
    days = project.drift.cooldown_days
    if days == 0:
        return None
    start = (dt.date.fromisoformat(ds) - dt.timedelta(days=days)).isoformat()
    fired = []
    for day in catalog.drift_checks(storage, project.name):
        if start <= day < ds:
            s = _stored(storage, project, day)
            if s and s.get("policy_fired"):
                fired.append(s["ds"])
    return max(fired, default=None)


def log_live_metrics(champ: Champion, summary: dict[str, Any]) -> None:
    """Live metrics and drift share on the champion's run, one step per partition day, stamped with the time
    of the check: a day checked again has its latest figures last (the model card reads them so)."""
    import time

    from pipelines.core.tracking import client

    step = metric_step(summary["ds"])
    ts = int(time.time() * 1000)
    from mlflow.entities import Metric

    metrics = [Metric("live_drift_share", float(summary["drift_share"]), ts, step)]
    for name, m in summary["performance"]["metrics"].items():
        if m.get("value") is not None:
            metrics.append(Metric(f"live_{name}", float(m["value"]), ts, step))
    for name, value in summary["performance"]["partition"]["metrics"].items():
        if value is not None:
            metrics.append(Metric(f"day_{name}", float(value), ts, step))
    client().log_batch(champ.info["run_id"], metrics=metrics)


def run_drift(project: ProjectConfig, ds: str, storage: Storage | None = None) -> dict[str, Any]:
    """Measure partition ``ds`` against the champion, decide, write the reports; returns the summary.

    Raises:
        NoChampion: nothing to monitor yet.
        MissingInput: the partition was not validated.
    """
    from pipelines.core.features import feature_spec
    from pipelines.core.storage import get_storage

    ds = ds_str(ds)
    storage = storage or get_storage()
    feature_spec(project)  # a bad config fails here, before MLflow and Evidently load
    if ds not in catalog.validated_partitions(storage, project.dataset.name):
        raise NoValidatedPartition(project.dataset.name, ds)
    t0 = time.monotonic()
    champ = Champion(project)
    spec = champ.spec  # the features the champion was trained on, not today's config (an edited expression)
    summary, snapshots = measure(project, ds, champ, storage, spec)
    history = _history(project, ds, champ, storage, spec)
    decision = decide(
        project.drift,
        ds,
        current=summary,
        history=history,
        last_retraining=_last_retraining(project, ds),
        last_fired=_last_fired(project, ds, storage),
    )
    summary.update({"policy_fired": decision.pop("fired"), "reason": decision.pop("reason"), "decision": decision})
    summary["seconds"]["total"] = round(time.monotonic() - t0, 3)
    _write(storage, project, summary, snapshots)
    try:
        log_live_metrics(champ, summary)
    except Exception as exc:  # noqa: BLE001 - monitoring must not fail on a metrics-logging hiccup
        log.warning("could not log live metrics to MLflow: %s", exc)
    log.info(
        "%s drift ds=%s vs v%s: drift_share=%.3f drifted=%s decayed=%s rows=%d -> %s (%s) report=%s",
        project.name,
        ds,
        summary["model_version"],
        summary["drift_share"],
        ",".join(summary["drifted_features"]) or "-",
        ",".join(summary["performance"]["decayed"]) or "-",
        summary["rows"],
        "FIRED" if summary["policy_fired"] else "no action",
        summary["reason"],
        summary.get("html_report"),
    )
    return summary


def asset_extra(summary: dict[str, Any]) -> dict[str, Any]:
    """What the drift asset event carries (the retrain run records it as its evidence)."""
    return {
        "model": summary["model"],
        "ds": summary["ds"],
        "model_version": summary["model_version"],
        "report": summary["report"],
        "html_report": summary.get("html_report"),
        "drift_share": summary["drift_share"],
        "drifted_features": summary["drifted_features"],
        "decayed_metrics": summary["performance"]["decayed"],
        "reason": summary["reason"],
        "rows": summary.get("rows"),
        "run_id": summary.get("run_id"),
    }


def run_drift_step(model: str, partitions: list[str]) -> dict[str, Any]:
    """The drift DAG's task: check partitions in order; ``fired`` is the asset event's extra (or None)."""
    from pipelines.core.config import load_project
    from pipelines.core.storage import get_storage

    project = load_project(model)
    storage = get_storage()
    checked, fired = [], None
    for ds in sorted(set(partitions)):
        s = run_drift(project, ds, storage)
        checked.append(
            {
                k: s[k]
                for k in ("ds", "model_version", "drift_share", "drifted_features", "policy_fired", "reason", "report")
            }
            | {"decayed_metrics": s["performance"]["decayed"], "html_report": s.get("html_report")}
        )
        if s["policy_fired"]:
            fired = asset_extra(s)
    if fired:  # the champion's run, for the alert's link (tracking is loaded already)
        from pipelines.core.tracking import run_url

        fired["champion_run"] = run_url(fired.get("run_id"))
    return {"model": model, "checked": checked, "fired": fired}
