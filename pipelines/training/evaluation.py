"""What a version's model card says about its own holdout, computed once when it is trained.

Logged on the training run as ``evaluation.json``
(:data:`pipelines.core.catalog.EVALUATION`):

- ``metrics``: every configured metric on the holdout, each with a
  percentile bootstrap interval (rows resampled, ``gate.bootstrap.samples``
  capped at :data:`MAX_SAMPLES`, its confidence and seed);
- ``slices``: the metrics of each value of the gate's slice columns with at
  least ``gate.slices.min_size`` rows (smaller ones listed with their size);
- ``importance``: each feature's mean absolute contribution over (a sample
  of) the holdout, by the method that gives the reasons beside the scores
  (:mod:`pipelines.core.reasons`): exact tree SHAP for XGBoost, ablation
  otherwise.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from pipelines.core.config import ProjectConfig

log = logging.getLogger(__name__)

MAX_SAMPLES = 300  # bootstrap resamples of the holdout for the card's intervals
MAX_BOOTSTRAP_ROWS = 100_000  # a larger holdout is resampled from a seeded sample of this many rows
IMPORTANCE_ROWS = 2000  # holdout rows the importance is averaged over (a seeded sample)


def _finite(v: float) -> float | None:
    return None if v != v or v in (float("inf"), float("-inf")) else round(float(v), 6)


def intervals(project: ProjectConfig, y: np.ndarray, scores: np.ndarray) -> dict[str, Any]:
    """Each configured metric with its percentile bootstrap interval over the holdout rows (at most
    :data:`MAX_BOOTSTRAP_ROWS` of them, a seeded sample, resampled one draw at a time)."""
    import numpy as np

    from pipelines.core.metrics import METRICS

    cfg = project.gate.bootstrap
    samples, confidence = min(cfg.samples, MAX_SAMPLES), cfg.confidence
    rng = np.random.default_rng(cfg.seed)
    y, scores = np.asarray(y, "float64"), np.asarray(scores, "float64")
    names = list(dict.fromkeys([project.metrics.primary, *project.metrics.secondary]))
    values = {n: METRICS[n].fn(y, scores) if len(y) else float("nan") for n in names}
    if len(y) > MAX_BOOTSTRAP_ROWS:
        keep = rng.choice(len(y), MAX_BOOTSTRAP_ROWS, replace=False)
        y, scores = y[keep], scores[keep]
    boot: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(samples if len(y) else 0):
        i = rng.integers(0, len(y), len(y))
        for n in names:
            boot[n].append(METRICS[n].fn(y[i], scores[i]))
    out = {}
    for n in names:
        b = np.asarray(boot[n], dtype="float64")
        b = b[np.isfinite(b)]
        low, high = np.quantile(b, [(1 - confidence) / 2, (1 + confidence) / 2]) if len(b) else (np.nan, np.nan)
        out[n] = {"value": _finite(values[n]), "low": _finite(low), "high": _finite(high)}
    return {"confidence": confidence, "samples": samples, "rows": len(y), "seed": cfg.seed, "metrics": out}


def slice_metrics(project: ProjectConfig, rows: pd.DataFrame, y: np.ndarray, scores: np.ndarray) -> list[dict]:
    """Per value of each slice column: rows and metrics (values under ``min_size`` rows: rows only)."""
    import numpy as np

    from pipelines.core.metrics import evaluate
    from pipelines.training.gate import with_slice_features

    names = [project.metrics.primary, *project.metrics.secondary]
    rows = with_slice_features(project, rows.reset_index(drop=True))
    y, scores = np.asarray(y, "float64"), np.asarray(scores, "float64")
    out = []
    for col in project.gate.slices.columns:
        values = []
        for value, idx in sorted(rows.groupby(col, dropna=False).indices.items(), key=lambda kv: -len(kv[1])):
            entry: dict[str, Any] = {"value": str(value), "rows": len(idx)}
            if len(idx) >= project.gate.slices.min_size:
                metrics = evaluate(project.target.task, names, y[idx], scores[idx])
                entry["metrics"] = {k: _finite(v) for k, v in metrics.items()}
            values.append(entry)
        out.append({"column": col, "min_size": project.gate.slices.min_size, "values": values})
    return out


def importance(project: ProjectConfig, pipeline: Any, rows: pd.DataFrame) -> dict[str, Any]:
    """Mean absolute contribution of each feature over a seeded sample of ``rows``, largest first."""
    import numpy as np
    import pyarrow as pa

    from pipelines.core.encoder import Scorer
    from pipelines.core.reasons import contributions

    sample = rows.sample(n=min(len(rows), IMPORTANCE_ROWS), random_state=0) if len(rows) else rows
    scorer = Scorer(pipeline, project.target.task)
    table = pa.Table.from_pandas(sample.reset_index(drop=True), preserve_index=False)
    scorer(table.slice(0, 256))  # the scorer's check of its fast path, as scoring does
    matrix, names, method = contributions(scorer, table)
    if not len(table) or not names:
        return {"method": method, "rows": len(table), "features": []}
    means = np.abs(matrix).mean(axis=0)
    order = np.argsort(-means, kind="stable")
    exact = method in ("tree_shap", "saabas")
    units = ("log-odds" if project.target.task == "classification" else "target units") if exact else "score units"
    return {
        "method": method,
        "units": units,
        "rows": len(table),
        "features": [{"feature": names[j], "mean_abs_contribution": _finite(means[j])} for j in order],
    }


def evaluation(project: ProjectConfig, pipeline: Any, rows: pd.DataFrame, y: np.ndarray, scores: np.ndarray) -> dict:
    """The card's evaluation of a fitted pipeline on its holdout (``rows``, labels ``y``, its ``scores``)."""
    return {
        "holdout_rows": len(rows),
        **intervals(project, y, scores),
        "slices": slice_metrics(project, rows, y, scores),
        "importance": importance(project, pipeline, rows),
    }
