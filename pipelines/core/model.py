"""The model: one scikit-learn pipeline from raw validated rows to a score.

XGBoost: ``features`` (:class:`pipelines.core.encoder.FeatureEncoder`: the
features, computed on Arrow, and the categoricals as ordinal codes, missing
values left to XGBoost) -> ``model``. A scikit-learn estimator: ``features``
(``pipelines.core.features.make_features``) -> ``encode`` (imputation and
one-hot encoding) -> ``model``. The pipeline is logged to MLflow as one model,
so the preprocessing travels with it and ``mlflow.pyfunc`` scores raw rows.
"""

from __future__ import annotations

import importlib
import logging
import time
from typing import TYPE_CHECKING, Any

from pipelines.core.errors import ConfigError

if TYPE_CHECKING:
    from pipelines.core.config import ProjectConfig
    from pipelines.core.features import FeatureSpec

SEED = 20130101
PROGRESS_STEPS = 10  # XGBoost logs its progress this many times per fit

log = logging.getLogger(__name__)


def _estimator(project: ProjectConfig) -> Any:
    cfg = project.model
    classification = project.target.task == "classification"
    if cfg.family == "xgboost":
        import xgboost as xgb

        params = {"tree_method": "hist", "n_jobs": 2, "random_state": SEED, **cfg.params}
        if classification:
            return xgb.XGBClassifier(eval_metric="logloss", **params)
        return xgb.XGBRegressor(**params)
    if not cfg.estimator or "." not in cfg.estimator:
        raise ConfigError(f"{project.source}: model.estimator: a dotted class path is required for sklearn")
    module, _, name = cfg.estimator.rpartition(".")
    if not module.startswith("sklearn."):
        raise ConfigError(f"{project.source}: model.estimator: only sklearn estimators are allowed (got {module})")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        raise ConfigError(f"{project.source}: model.estimator: cannot import {cfg.estimator}") from None
    params = dict(cfg.params)
    if "random_state" in cls().get_params():
        params.setdefault("random_state", SEED)
    return cls(**params)


def build_pipeline(project: ProjectConfig, spec: FeatureSpec) -> Any:
    """An unfitted pipeline: raw rows in, prediction out."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder

    from pipelines.core.features import make_features

    if project.model.family == "xgboost":
        from pipelines.core.encoder import FeatureEncoder

        return Pipeline([("features", FeatureEncoder(spec)), ("model", _estimator(project))])
    features = FunctionTransformer(make_features, kw_args={"spec": spec}, validate=False)
    encode = ColumnTransformer(
        [
            ("num", SimpleImputer(strategy="median"), spec.numeric_out),
            (
                "cat",
                Pipeline(
                    [
                        ("impute", SimpleImputer(strategy="constant", fill_value="<null>")),
                        ("onehot", OneHotEncoder(handle_unknown="ignore", min_frequency=10)),
                    ]
                ),
                spec.categorical_out,
            ),
        ],
        verbose_feature_names_out=False,
    )
    return Pipeline([("features", features), ("encode", encode), ("model", _estimator(project))])


def pipeline_spec(model: Any) -> FeatureSpec | None:
    """The feature spec a fitted pipeline of ours carries (either layout), or ``None``."""
    features = getattr(model, "named_steps", {}).get("features")
    spec = getattr(features, "spec", None)
    if spec is None:
        spec = (getattr(features, "kw_args", None) or {}).get("spec")
    return spec


def predict_scores(model: Any, rows: Any, task: str) -> Any:
    """Scores of a fitted pipeline or a loaded pyfunc: P(positive) or the predicted value."""
    import numpy as np

    if hasattr(model, "predict_proba") and task == "classification":
        return np.asarray(model.predict_proba(rows))[:, 1]
    out = np.asarray(model.predict(rows))
    return out[:, 1] if out.ndim == 2 else out.astype("float64")


def _xgb_progress(label: str, rounds: int) -> Any:
    """An XGBoost callback logging every tenth of the boosting rounds, with the time left."""
    import xgboost as xgb

    every = max(1, rounds // PROGRESS_STEPS)

    class Progress(xgb.callback.TrainingCallback):
        def before_training(self, model):
            self.t0 = self.last_t = time.monotonic()
            self.last_done = 0
            return model

        def after_iteration(self, model, epoch: int, evals_log) -> bool:
            done = epoch + 1
            if done % every == 0 or done == rounds:
                now = time.monotonic()
                # The time left at the pace of the latest stretch (the first rounds run slower).
                left = (now - self.last_t) / (done - self.last_done) * (rounds - done)
                self.last_t, self.last_done = now, done
                msg = "%s: boosting round %d/%d, %.1f s elapsed, about %.0f s left"
                log.info(msg, label, done, rounds, now - self.t0, left)
            return False  # never stop early

    return Progress()


def fit(pipeline: Any, x: Any, y: Any, *, label: str) -> float:
    """Fit ``pipeline`` on ``x``, ``y``, logging the start, XGBoost's progress and the end; the seconds taken.

    The progress callback is set for this fit only and removed afterwards, so
    the model logged to MLflow holds no reference to it.
    """
    model = pipeline.named_steps["model"]
    log.info("%s: fitting %s on %d rows", label, type(model).__name__, len(x))
    t0 = time.monotonic()
    xgboost = hasattr(model, "get_xgb_params")
    if xgboost:
        pipeline.set_params(model__callbacks=[_xgb_progress(label, model.get_params()["n_estimators"] or 100)])
    try:
        pipeline.fit(x, y)
    finally:
        if xgboost:
            pipeline.set_params(model__callbacks=None)
    seconds = time.monotonic() - t0
    log.info("%s: fitted %s in %.1f s", label, type(model).__name__, seconds)
    return seconds
