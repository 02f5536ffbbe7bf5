"""Measuring a window of validated partitions against the champion: data drift (Evidently) and live metrics.

The champion's references are stored with its version at training time, so
a check only reads Parquet. Only this module imports Evidently, and only
inside the function that needs it.
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

if TYPE_CHECKING:
    import pandas as pd

    from pipelines.core.config import ProjectConfig
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
        chosen = [c for c in features if not is_calendar(c, spec)]
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


# ---- one partition


class Champion:
    """The champion with its references and model, loaded once per step."""

    def __init__(self, project: ProjectConfig):
        self.project = project
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

    @property
    def spec(self) -> Any:
        """The champion's own feature spec, as logged in its pipeline: its reference was built with it, and
        the config's features may have been edited since (an expression's text, a derived feature added)."""
        from pipelines.core.model import pipeline_spec

        spec = pipeline_spec(self.model)
        if spec is None:  # not a pipeline of ours: the config's
            from pipelines.core.features import feature_spec

            spec = feature_spec(self.project)
        return spec


def window_days(project: ProjectConfig, ds: str) -> list[str]:
    """The days pooled into the check of ``ds``: ``drift.window_days`` ending at ``ds``."""
    day = dt.date.fromisoformat(ds)
    n = project.drift.window_days
    return [(day - dt.timedelta(days=n - 1 - i)).isoformat() for i in range(n)]


def window_inputs(storage: Storage, project: ProjectConfig, days: list[str]) -> dict[str, int]:
    """What a window's signal was computed from (bytes per validated partition): a re-validated day changes it."""
    return {d: storage.size(catalog.validated_file(project.dataset.name, d)) for d in days}


def measure(
    project: ProjectConfig, ds: str, champ: Champion, storage: Storage, spec: Any
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
    from pipelines.monitoring.policy import signal

    return {
        **base,
        **drift,
        "performance": perf,
        **signal(project, len(rows), drift, perf),
        "seconds": {"score": round(t1 - t0, 3), "drift": round(t2 - t1, 3)},
    }, snapshots
