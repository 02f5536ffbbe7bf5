"""Reasons beside each score: every row's ``top_k`` features by the size of their contribution.

Turned on per project with ``scoring.explanations: {top_k: 3}``. The scores
table then has, for ``i`` in ``1..top_k``:

- ``reason_<i>`` (string, dictionary-encoded): the feature with the i-th
  largest absolute contribution to this row's score (features as the model
  sees them: ``day_of_week``, not the timestamp it is derived from);
- ``reason_<i>_contribution`` (float32, signed): how far it moved the score,
  positive towards a higher score;

and ``reason_method`` (string, one value): how they were computed.

Methods:

- ``tree_shap`` (XGBoost, the default): exact path-dependent tree SHAP values,
  XGBoost's own ``pred_contribs``. Contributions are in the model's margin
  units (log-odds for a classifier, the target's units for a regressor) and
  add up, with the bias, to the margin. Exact, and costly: about 0.2 ms per
  row for 300 depth-4 trees on one core of a small machine, many times the
  trees' own prediction (``make bench`` measures it).
- ``saabas`` (XGBoost, ``method: saabas``): ``approx_contribs``, the
  contributions along each row's own decision path (Saabas). Same units, the
  same ranking in most rows, several times cheaper; not consistent in the
  Shapley sense.
- ``ablation`` (the fallback: scikit-learn estimators, and an XGBoost pipeline
  the fast path cannot read): each feature in turn is set to missing, so the
  pipeline's own imputation stands in for it (the training median, an unknown
  category), and its contribution is the score minus the score without it,
  in score units. One extra prediction per feature.
- ``none``: a model whose layout this module does not know (no feature spec);
  the reason columns are null, never guessed.

Ties keep feature order. A feature whose contribution is zero is no reason:
a row with fewer moving features than ``top_k`` (or a model with fewer
features) has its last reasons null.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipelines.core.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from pipelines.core.config import ExplanationsConfig
    from pipelines.core.encoder import Scorer


def reason_columns(top_k: int) -> list[str]:
    """The columns explanations add, in table order."""
    cols = []
    for i in range(1, top_k + 1):
        cols += [f"reason_{i}", f"reason_{i}_contribution"]
    return [*cols, "reason_method"]


@dataclass
class Reasons:
    """Each row's top features: ``index[r, i]`` into ``names`` (``-1``: none) and its ``value``."""

    names: list[str]
    index: np.ndarray  # (rows, top_k) int32
    value: np.ndarray  # (rows, top_k) float32
    method: str

    def columns(self) -> dict[str, pa.Array]:
        """The typed reason columns of :func:`reason_columns`."""
        import numpy as np
        import pyarrow as pa

        n, k = self.index.shape
        names = pa.array(self.names, pa.string())
        out: dict[str, pa.Array] = {}
        for i in range(k):
            missing = self.index[:, i] < 0
            idx = pa.array(np.where(missing, 0, self.index[:, i]).astype("int32"), mask=missing)
            out[f"reason_{i + 1}"] = pa.DictionaryArray.from_arrays(idx, names)
            out[f"reason_{i + 1}_contribution"] = pa.array(self.value[:, i], pa.float32(), mask=missing)
        zeros = pa.array(np.zeros(n, dtype="int32"))
        out["reason_method"] = pa.DictionaryArray.from_arrays(zeros, pa.array([self.method], pa.string()))
        return out


def top_reasons(contributions: np.ndarray, names: list[str], top_k: int, method: str) -> Reasons:
    """The ``top_k`` features of each row by absolute contribution (``contributions``: rows x features)."""
    import numpy as np

    contributions = np.asarray(contributions, dtype="float64")
    n, f = contributions.shape
    k = min(top_k, f)
    # Stable sort of -|c|: the largest first, ties in feature order. NaN (never from a tree) sorts last.
    order = np.argsort(-np.abs(np.nan_to_num(contributions, nan=0.0)), axis=1, kind="stable")[:, :k]
    index = np.full((n, top_k), -1, dtype="int32")
    value = np.zeros((n, top_k), dtype="float32")
    index[:, :k] = order
    value[:, :k] = np.take_along_axis(contributions, order, axis=1)
    nothing = ~(np.abs(value) > 0)  # a feature that did not move the score (or NaN) is no reason
    index[nothing], value[nothing] = -1, 0.0
    return Reasons(list(names), index, value, method)


def explain(scorer: Scorer, rows: pa.Table, cfg: ExplanationsConfig) -> Reasons:
    """Reasons for ``rows`` (the rows ``scorer`` scores, in order), by the best method the model allows."""
    matrix, names, method = contributions(scorer, rows, cfg.method)
    return top_reasons(matrix, names, cfg.top_k, method)


def contributions(scorer: Scorer, rows: pa.Table, method: str = "tree_shap") -> tuple[np.ndarray, list[str], str]:
    """Every feature's contribution to each row's score: ``(rows x features, feature names, method used)``.

    ``method`` (``tree_shap`` or ``saabas``) applies to XGBoost models on the fast path; any other model is
    explained by ablation, and one of unknown layout by nothing (``none``, no features).
    """
    import numpy as np

    from pipelines.core.model import pipeline_spec

    spec = pipeline_spec(scorer.pipeline)
    names = list(spec.output_columns) if spec is not None else []
    if not len(rows):  # an empty partition still publishes: no rows, no reasons, the same columns
        used = method if scorer.fast else ("ablation" if names else "none")
        return np.empty((0, len(names))), names, used
    if scorer.fast:  # our encoder and an XGBoost booster: the booster's own contributions
        import xgboost as xgb

        matrix = scorer.encoder.transform(rows)
        booster = scorer.estimator.get_booster()
        contribs = booster.predict(
            xgb.DMatrix(matrix, missing=np.nan, nthread=_threads(scorer.estimator)),
            pred_contribs=True,
            approx_contribs=method == "saabas",
            validate_features=False,
        )
        if contribs.ndim != 2:  # one margin per row is all this system trains (binary or regression)
            raise ConfigError(
                f"scoring.explanations: the model gives {contribs.shape[1]} outputs per row (contributions of "
                f"shape {contribs.shape}); reasons explain one score per row: turn explanations off for it"
            )
        return contribs[:, :-1], list(scorer.encoder.spec.output_columns), method
    return _ablation(scorer, rows)


def _threads(estimator: Any) -> int:
    n = getattr(estimator, "n_jobs", None)
    return n if isinstance(n, int) and n > 0 else 0


def _ablation(scorer: Scorer, rows: pa.Table) -> tuple[np.ndarray, list[str], str]:
    """Contributions as the score's change when each feature is set to missing (any pipeline of our layout:
    a feature frame for scikit-learn's encoding, or our encoder's matrix, whose missing XGBoost reads as such)."""
    import numpy as np
    import pandas as pd

    from pipelines.core.model import pipeline_spec, predict_scores

    pipeline = scorer.pipeline
    spec = pipeline_spec(pipeline)
    steps = getattr(pipeline, "steps", None) or []
    if spec is None or len(steps) < 2:
        return np.empty((len(rows), 0)), [], "none"
    frame = rows.to_pandas() if hasattr(rows, "to_pandas") else rows
    head, tail = pipeline[:1], pipeline[1:]
    features = head.transform(frame)
    matrix = not isinstance(features, pd.DataFrame)
    if matrix:  # the encoder's float32 matrix, columns in the spec's order
        features = pd.DataFrame(np.asarray(features, dtype="float32"), columns=list(spec.output_columns))
    names = [c for c in spec.output_columns if c in features.columns]

    def predict(frame: pd.DataFrame) -> np.ndarray:
        data = frame.to_numpy(dtype="float32") if matrix else frame
        return np.asarray(predict_scores(tail, data, scorer.task), dtype="float64")

    base = predict(features)
    out = np.empty((len(features), len(names)), dtype="float64")
    for j, name in enumerate(names):
        ablated = features.copy()
        if name in spec.numeric_out:
            ablated[name] = np.nan  # the imputer's median (scikit-learn) or XGBoost's learned missing branch
        else:  # an unknown category: the encoder's code for it, or what scikit-learn's encoding makes of None
            ablated[name] = -1.0 if matrix else None
        out[:, j] = base - predict(ablated)
    return out, names, "ablation"
