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

Outputs (:mod:`pipelines.core.catalog`): the check's summary (measures,
decision and its inputs) and Evidently's HTML reports, under the model's
reports. Only this module imports
Evidently, and only inside the functions that need it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import math
import time
from typing import TYPE_CHECKING, Any

from pipelines.core import catalog
from pipelines.core.errors import ConfigError, MissingInput, NoChampion, NoValidatedPartition
from pipelines.core.features import PREDICTION_COLUMN, TARGET_COLUMN
from pipelines.core.partitions import ds_str

if TYPE_CHECKING:
    import pandas as pd

    from pipelines.core.config import DriftConfig, ProjectConfig
    from pipelines.core.storage import Storage

log = logging.getLogger(__name__)


# ---- what is monitored


def monitored_columns(project: ProjectConfig, spec: Any) -> list[str]:
    """The features whose drift counts: ``drift.columns``, or every feature but calendar-like ones."""
    from pipelines.core.features import is_calendar

    features = spec.output_columns
    cfg = project.drift
    if cfg.columns is not None:
        unknown = [c for c in cfg.columns if c not in features]
        if unknown:
            raise ConfigError(f"{project.source}: drift.columns: {unknown} are not model features ({features})")
        chosen = list(cfg.columns)
    else:
        chosen = [c for c in features if not is_calendar(c)]
    chosen = [c for c in chosen if c not in cfg.exclude]
    if not chosen:
        raise ConfigError(f"{project.source}: drift: no feature left to monitor")
    return chosen


def policy_hash(project: ProjectConfig) -> str:
    """Short hash of what a partition's signal depends on (drift config and target)."""
    blob = json.dumps(
        {"drift": project.drift.model_dump(mode="json"), "target": project.target.model_dump(mode="json")},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


# ---- the champion and its reference


def champion_info(project: ProjectConfig) -> dict[str, Any]:
    """The champion's version, run, holdout baseline and training window end."""
    from pipelines.core.tracking import CHAMPION, alias_version, client

    c = client()
    mv = alias_version(c, project.name, CHAMPION)  # an outage raises (the task retries); only absence skips
    if mv is None:
        raise NoChampion(f"{project.name}: no '{CHAMPION}' to monitor yet")
    run = c.get_run(mv.run_id)
    baseline = {k.removeprefix("holdout_"): v for k, v in run.data.metrics.items() if k.startswith("holdout_")}
    return {
        "version": str(mv.version),
        "run_id": mv.run_id,
        "baseline": baseline,
        "end_ds": run.data.tags.get("end_ds"),
        "model_uri": f"models:/{project.name}/{mv.version}",
    }


def load_reference(run_id: str, artifact: str) -> pd.DataFrame:
    """A drift reference stored with the version (:data:`~pipelines.core.catalog.DRIFT_REFERENCE` or
    :data:`~pipelines.core.catalog.HOLDOUT_SCORES_REFERENCE`)."""
    import mlflow
    import pandas as pd

    from pipelines.core.tracking import configure

    configure()
    try:
        path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact)
    except Exception as exc:  # noqa: BLE001
        raise MissingInput(f"run {run_id} has no drift reference {artifact}: {exc}") from None
    return pd.read_parquet(path)


# ---- measurements


def data_drift(
    reference: pd.DataFrame,
    holdout: pd.DataFrame,
    current: pd.DataFrame,
    columns: list[str],
    spec: Any,
    project: ProjectConfig,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Evidently's drift of the monitored features (against the training sample) and of the
    score and label (against the holdout's out-of-sample scores); returns (result, snapshots)."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift
    from evidently.presets import DataDriftPreset

    cfg = project.drift
    numeric = [c for c in spec.numeric_out if c in columns]
    categorical = [c for c in spec.categorical_out if c in columns]
    features = Report(
        [DataDriftPreset(columns=columns, drift_share=cfg.drift_share, method=cfg.method, threshold=cfg.threshold)],
        include_tests=True,
    )
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    snapshots = {
        "features": features.run(
            current_data=Dataset.from_pandas(current[columns], data_definition=definition),
            reference_data=Dataset.from_pandas(reference[columns], data_definition=definition),
        )
    }
    classification = project.target.task == "classification"
    out_cols = [PREDICTION_COLUMN]
    labelled = current[TARGET_COLUMN].dropna()
    if len(labelled) and labelled.nunique() + holdout[TARGET_COLUMN].nunique() > 1:
        out_cols.append(TARGET_COLUMN)
    definition = DataDefinition(
        numerical_columns=[c for c in out_cols if c == PREDICTION_COLUMN or not classification],
        categorical_columns=[c for c in out_cols if c == TARGET_COLUMN and classification],
    )
    scores = Report([ValueDrift(column=c) for c in out_cols], include_tests=True)
    snapshots["scores"] = scores.run(
        current_data=Dataset.from_pandas(current[out_cols], data_definition=definition),
        reference_data=Dataset.from_pandas(holdout[out_cols], data_definition=definition),
    )
    per_column: dict[str, dict[str, Any]] = {}
    for snapshot in snapshots.values():
        result = snapshot.dict()
        failed = {
            t["metric_config"]["metric_id"]
            for t in result.get("tests", [])
            if t.get("id") == "drift" and t.get("status") in ("FAIL", "WARNING")
        }
        for m in result["metrics"]:
            config = m.get("config", {})
            if not config.get("type", "").endswith(":ValueDrift"):
                continue
            per_column[config["column"]] = {
                "score": _num(m.get("value")),
                "method": config.get("method"),
                "threshold": config.get("threshold"),
                "drifted": m["id"] in failed,
            }
    drifted = [c for c in columns if per_column.get(c, {}).get("drifted")]
    out = {
        "columns": {c: per_column[c] for c in columns if c in per_column},
        "drifted_features": drifted,
        "drift_share": round(len(drifted) / len(columns), 6),
        "prediction_drift": per_column.get(PREDICTION_COLUMN),
        "target_drift": per_column.get(TARGET_COLUMN),
    }
    return out, snapshots


def performance(project: ProjectConfig, y: Any, scores: Any, baseline: dict[str, float]) -> dict[str, Any]:
    """Live metrics on the labelled rows against the holdout baseline; which ones decayed beyond the limits."""
    import numpy as np

    from pipelines.core.metrics import METRICS, evaluate

    task = project.target.task
    y = np.asarray(y, dtype="float64")
    s = np.asarray(scores, dtype="float64")
    names = list(dict.fromkeys([project.metrics.primary, *project.metrics.secondary, *project.drift.performance_decay]))
    out: dict[str, Any] = {"rows": len(y), "metrics": {}, "decayed": []}
    if len(y) == 0:
        return out
    live = evaluate(task, names, y, s)
    if task == "classification":
        threshold = project.metrics.classification_threshold
        live["positive_share"] = float(y.mean())
        live["predicted_positive_share"] = float((s >= threshold).mean())
        baseline = {
            **baseline,
            "positive_share": baseline.get("holdout_positive_share", baseline.get("positive_share")),
        }
    for name, value in live.items():
        base = baseline.get(name)
        entry: dict[str, Any] = {"value": _num(value), "baseline": _num(base)}
        limit = project.drift.performance_decay.get(name)
        if name in METRICS and base is not None and value == value:
            decay = -METRICS[name].gain(value, base)  # positive when live is worse
            entry["decay"] = round(decay, 6)
            if limit is not None:
                bound = min(
                    b
                    for b in (limit.absolute, None if limit.relative is None else limit.relative * abs(base))
                    if b is not None
                )
                entry["allowed_decay"] = round(bound, 6)
                entry["decayed"] = bool(decay > bound)
                if entry["decayed"]:
                    out["decayed"].append(name)
        out["metrics"][name] = entry
    return out


def _num(v: Any) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else round(float(v), 6)


def signal(project: ProjectConfig, rows: int, drift: dict[str, Any], perf: dict[str, Any]) -> dict[str, Any]:
    """Whether one partition signals, and why (pure)."""
    cfg = project.drift
    reasons = []
    if rows < cfg.min_rows:
        return {"signal": False, "reasons": [f"{rows} rows < min_rows {cfg.min_rows}"]}
    if drift["drift_share"] >= cfg.drift_share:
        reasons.append(
            f"drift_share {drift['drift_share']:.3f} >= {cfg.drift_share} ({', '.join(drift['drifted_features'])})"
        )
    for name in perf.get("decayed", []):
        m = perf["metrics"][name]
        reasons.append(
            f"{name} {m['value']:.4f} vs baseline {m['baseline']:.4f}: decay {m['decay']:.4f} > {m['allowed_decay']}"
        )
    return {"signal": bool(reasons), "reasons": reasons}


def decide(
    cfg: DriftConfig,
    ds: str,
    *,
    current: dict[str, Any],
    history: list[tuple[str, bool]],
    last_retraining: str | None,
    last_fired: str | None,
) -> dict[str, Any]:
    """The policy's decision for partition ``ds`` (pure: every input is an argument and is recorded).

    Args:
        current: this partition's signal (``signal``, ``reasons``).
        history: ``(ds, signal)`` of the validated partitions just before ``ds``, oldest first
            (at most ``consecutive - 1``).
        last_retraining: end of the newest training window at or before ``ds``.
        last_fired: the newest partition before ``ds`` on which the policy fired.
    """
    day = dt.date.fromisoformat(ds)
    inputs = {
        "consecutive_required": cfg.consecutive,
        "history": [{"ds": d, "signal": s} for d, s in history],
        "cooldown_days": cfg.cooldown_days,
        "last_retraining": last_retraining,
        "last_fired": last_fired,
    }
    if not current["signal"]:
        return {
            "fired": False,
            "reason": "no signal: " + ("; ".join(current["reasons"]) or "no drift, no decay"),
            **inputs,
        }
    streak = 1
    for _d, s in reversed(history):
        if not s:
            break
        streak += 1
    inputs["streak"] = streak
    if streak < cfg.consecutive:
        return {
            "fired": False,
            "reason": f"signal on {streak} partition(s) in a row, {cfg.consecutive} required",
            **inputs,
        }
    recent = [d for d in (last_retraining, last_fired) if d and d <= ds]
    if recent:
        last = max(recent)
        age = (day - dt.date.fromisoformat(last)).days
        inputs["days_since_last"] = age
        if age < cfg.cooldown_days:
            what = "firing" if last == last_fired else "retraining"
            return {
                "fired": False,
                "reason": f"cooldown: last {what} on {last}, {age} < {cfg.cooldown_days} day(s)",
                **inputs,
            }
    return {
        "fired": True,
        "reason": f"signal on {streak} partition(s) in a row: " + "; ".join(current["reasons"]),
        **inputs,
    }


# ---- one partition


class _Champion:
    """The champion with its references and model, loaded once per step."""

    def __init__(self, project: ProjectConfig):
        self.info = champion_info(project)
        self.reference = load_reference(self.info["run_id"], catalog.DRIFT_REFERENCE)
        self.holdout = load_reference(self.info["run_id"], catalog.HOLDOUT_SCORES_REFERENCE)
        self._model = None

    @property
    def model(self) -> Any:
        if self._model is None:
            import mlflow.sklearn

            self._model = mlflow.sklearn.load_model(self.info["model_uri"])
        return self._model


def window_days(project: ProjectConfig, ds: str) -> list[str]:
    """The days pooled into the check of ``ds``: ``drift.window_days`` ending at ``ds``."""
    day = dt.date.fromisoformat(ds)
    n = project.drift.window_days
    return [(day - dt.timedelta(days=n - 1 - i)).isoformat() for i in range(n)]


def window_inputs(storage: Storage, project: ProjectConfig, days: list[str]) -> dict[str, int]:
    """What a window's signal was computed from (bytes per validated partition): a re-validated day changes it."""
    return {d: storage.size(catalog.validated_file(project.dataset.name, d)) for d in days}


def measure(
    project: ProjectConfig, ds: str, champ: _Champion, storage: Storage, spec: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Drift, performance and signal of the window ending at ``ds`` against the champion (no decision)."""
    import numpy as np
    import pandas as pd

    from pipelines.core.features import make_features, make_target
    from pipelines.core.model import predict_scores

    have = set(catalog.validated_partitions(storage, project.dataset.name))
    if ds not in have:
        raise NoValidatedPartition(project.dataset.name, ds)
    days = [d for d in window_days(project, ds) if d in have]
    frames = [catalog.read_validated(storage, project.dataset.name, d) for d in days]
    rows = pd.concat(frames, ignore_index=True)
    columns = monitored_columns(project, spec)
    base = {
        "ds": ds,
        "model": project.name,
        "model_version": champ.info["version"],
        "run_id": champ.info["run_id"],
        "policy_hash": policy_hash(project),
        "window_inputs": window_inputs(storage, project, days),
        "rows": len(rows),
        "partition_rows": len(frames[-1]),
        "window": [days[0], days[-1]],
        "reference_rows": len(champ.reference),
        "monitored_columns": columns,
    }
    if len(rows) < project.drift.min_rows:  # too small to judge: no scoring, no Evidently
        return {
            **base,
            "columns": {},
            "drifted_features": [],
            "drift_share": 0.0,
            "prediction_drift": None,
            "target_drift": None,
            "performance": {
                "rows": 0,
                "metrics": {},
                "decayed": [],
                "window_days": days,
                "partition": {"rows": 0, "metrics": {}},
            },
            "signal": False,
            "reasons": [f"{len(rows)} rows < min_rows {project.drift.min_rows}"],
            "seconds": {"score": 0.0, "drift": 0.0},
        }, {}
    t0 = time.monotonic()
    current = make_features(rows, spec).reset_index(drop=True)
    scores = np.asarray(predict_scores(champ.model, rows, project.target.task), dtype="float64")
    current[PREDICTION_COLUMN] = scores
    y = make_target(rows, project).to_numpy(dtype="float64")
    current[TARGET_COLUMN] = y
    t1 = time.monotonic()
    drift, snapshots = data_drift(champ.reference, champ.holdout, current, columns, spec, project)
    t2 = time.monotonic()
    labelled = ~np.isnan(y)
    perf = performance(project, y[labelled], scores[labelled], champ.info["baseline"])
    # The checked day on its own, for the time series (the policy reads the window).
    first = len(y) - len(frames[-1])  # the checked day's rows are the window's last ones
    day_y, day_s, day_ok = y[first:], scores[first:], labelled[first:]
    day_perf = performance(project, day_y[day_ok], day_s[day_ok], champ.info["baseline"])
    perf["window_days"] = days
    perf["partition"] = {
        "rows": day_perf["rows"],
        "metrics": {k: v["value"] for k, v in day_perf["metrics"].items()},
    }
    return {
        **base,
        **drift,
        "performance": perf,
        **signal(project, len(rows), drift, perf),
        "seconds": {"score": round(t1 - t0, 3), "drift": round(t2 - t1, 3)},
    }, snapshots


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


def _history(project: ProjectConfig, ds: str, champ: _Champion, storage: Storage, spec: Any) -> list[tuple[str, bool]]:
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


def log_live_metrics(champ: _Champion, summary: dict[str, Any]) -> None:
    """Live metrics and drift share on the champion's run, one step per partition day."""
    from pipelines.core.tracking import client

    day = dt.date.fromisoformat(summary["ds"])
    step = (day - dt.date(1970, 1, 1)).days
    ts = int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp() * 1000)
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
    spec = feature_spec(project)
    if ds not in catalog.validated_partitions(storage, project.dataset.name):  # fail before MLflow, Evidently load
        raise NoValidatedPartition(project.dataset.name, ds)
    t0 = time.monotonic()
    champ = _Champion(project)
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
    return {"model": model, "checked": checked, "fired": fired}
