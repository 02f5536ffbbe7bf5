"""Model metrics: one registry for training, the gate and monitoring.

Each metric knows its direction and whether it needs probabilities, so the
gate can compare challenger and champion without special cases.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

    from pipelines.core.config import MetricsConfig


@dataclass(frozen=True)
class Metric:
    """A metric: ``fn(y_true, score)`` and which way is better."""

    name: str
    fn: Callable[[np.ndarray, np.ndarray], float]
    greater_is_better: bool
    tasks: tuple[str, ...]

    def better(self, a: float, b: float) -> bool:
        """Whether ``a`` is strictly better than ``b``."""
        return a > b if self.greater_is_better else a < b

    def gain(self, challenger: float, champion: float) -> float:
        """Improvement of challenger over champion, positive when better."""
        return challenger - champion if self.greater_is_better else champion - challenger


def _roc_auc(y, p):
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p)) if len(set(y.tolist())) > 1 else float("nan")


def _pr_auc(y, p):
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(y, p)) if y.sum() > 0 else float("nan")


def _log_loss(y, p):
    from sklearn.metrics import log_loss

    return float(log_loss(y, p, labels=[0, 1]))


def _brier(y, p):
    from sklearn.metrics import brier_score_loss

    return float(brier_score_loss(y, p))


def _positive_rate(y, p):
    return float((p >= 0.5).mean())


def _rmse(y, p):
    import numpy as np

    return float(np.sqrt(np.mean((y - p) ** 2)))


def _mae(y, p):
    import numpy as np

    return float(np.mean(np.abs(y - p)))


def _mae_skill(y, p):
    """``1 - MAE / MAE of the best constant`` (the median of ``y``): above 0 beats any constant guess.

    Scale-free, so one floor holds across seasons whose errors differ in size
    (summer delays are larger than winter ones); the absolute-error analogue of R².
    """
    import numpy as np

    if len(y) == 0:
        return float("nan")
    baseline = float(np.mean(np.abs(y - np.median(y))))
    return float(1.0 - np.mean(np.abs(y - p)) / baseline) if baseline > 0 else float("nan")


def _r2(y, p):
    from sklearn.metrics import r2_score

    return float(r2_score(y, p))


_C, _R = ("classification",), ("regression",)
METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("roc_auc", _roc_auc, True, _C),
        Metric("pr_auc", _pr_auc, True, _C),
        Metric("log_loss", _log_loss, False, _C),
        Metric("brier", _brier, False, _C),
        Metric("positive_rate", _positive_rate, True, _C),
        Metric("rmse", _rmse, False, _R),
        Metric("mae", _mae, False, _R),
        Metric("mae_skill", _mae_skill, True, _R),
        Metric("r2", _r2, True, _R),
    )
}


def default_metrics(task: str) -> MetricsConfig:
    """Primary and secondary metrics when a project does not configure them."""
    from pipelines.core.config import MetricsConfig

    if task == "classification":
        return MetricsConfig(primary="roc_auc", secondary=["pr_auc", "log_loss", "brier"])
    return MetricsConfig(primary="rmse", secondary=["mae", "r2"])


def evaluate(task: str, names: list[str], y_true: np.ndarray, score: np.ndarray) -> dict[str, float]:
    """Every named metric on one set of predictions."""
    import numpy as np

    y = np.asarray(y_true, dtype="float64")
    s = np.asarray(score, dtype="float64")
    return {name: METRICS[name].fn(y, s) for name in dict.fromkeys(names)}
