"""The XGBoost models' input step: raw rows (Arrow or pandas) -> one float32 matrix, with no Python work per value.

:class:`FeatureEncoder` is the first step of every XGBoost pipeline logged
since scoring reads Arrow: it computes the features
(:func:`pipelines.core.features.feature_columns`) and encodes each categorical
feature as the position of its key among the keys seen in ``fit``, sorted
(``-1`` for a key never seen, and for missing), with Arrow's ``index_in``
kernel. Those are the codes scikit-learn's ``OrdinalEncoder`` gave the earlier
pipelines (sorted categories, unknown and missing ``-1``), so a model fitted
on the same rows is the same model: only the time to encode changed.

:func:`compiled` turns a loaded pipeline into the scoring fast path (Arrow
rows in, scores out, no pandas), for both layouts: this one, and the earlier
``make_features`` -> ``OrdinalEncoder`` -> XGBoost pipelines, whose fitted
categories are taken over when they are all text. Anything else (a
scikit-learn estimator, categories that are not text) is scored through the
pipeline itself.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from pipelines.core.features import FeatureSpec

log = logging.getLogger(__name__)


def encoder_class() -> type:
    """The :class:`FeatureEncoder` class, defined on first use.

    It is a scikit-learn estimator, so defining it imports scikit-learn:
    deferred until a model is built or loaded (which imports scikit-learn
    anyway), so importing this module stays as cheap as every module of the
    library. ``pipelines.core.encoder.FeatureEncoder`` (what a logged model's
    pickle names) resolves through the module's ``__getattr__``.
    """
    cls = globals().get("FeatureEncoder")
    if cls is None:
        cls = _define()
        globals()["FeatureEncoder"] = cls
    return cls


def __getattr__(name: str) -> Any:
    if name == "FeatureEncoder":
        return encoder_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _define() -> type:
    from sklearn.base import BaseEstimator, TransformerMixin

    class FeatureEncoder(TransformerMixin, BaseEstimator):
        """Raw rows -> the model's float32 input matrix, columns in ``spec.output_columns`` order.

        Numeric features are their float values (NaN for missing, which XGBoost
        treats as missing); a categorical feature is the position of its key in
        ``categories_[name]`` (sorted), or ``-1``.
        """

        def __init__(self, spec: FeatureSpec | None = None) -> None:
            self.spec = spec

        def fit(self, X: Any, y: Any = None) -> FeatureEncoder:
            self._fit(self._columns(X))
            return self

        def fit_transform(self, X: Any, y: Any = None, **fit_params: Any) -> np.ndarray:
            columns = self._columns(X)  # the features once, for both
            self._fit(columns)
            return self._encode(columns, len(X))

        def transform(self, X: Any) -> np.ndarray:
            return self._encode(self._columns(X), len(X))

        def _columns(self, X: Any) -> dict[str, Any]:
            from pipelines.core.features import feature_columns

            return feature_columns(X, self.spec)

        def _fit(self, columns: dict[str, Any]) -> None:
            import pyarrow.compute as pc

            self.categories_ = {
                name: sorted(pc.unique(columns[name]).drop_null().to_pylist()) for name in self.spec.categorical_out
            }
            self.n_features_out_ = len(self.spec.output_columns)

        def _encode(self, columns: dict[str, Any], rows: int) -> np.ndarray:
            import numpy as np
            import pyarrow as pa
            import pyarrow.compute as pc

            out = np.empty((rows, len(columns)), dtype="float32")
            for j, (name, values) in enumerate(columns.items()):
                if name in self.categories_:
                    known = pa.array(self.categories_[name], pa.string())
                    codes = pc.fill_null(pc.index_in(values, value_set=known), -1)
                    out[:, j] = codes.to_numpy()
                else:
                    out[:, j] = values
            return out

        def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
            import numpy as np

            return np.asarray(self.spec.output_columns, dtype=object)

    FeatureEncoder.__qualname__ = "FeatureEncoder"
    return FeatureEncoder


def _legacy_encoder(pipeline: Any) -> Any:
    """The encoder equal to an earlier ``features`` -> ``encode`` (``OrdinalEncoder``) pipeline's first two steps,
    or ``None`` when it cannot be one (its layout, or a category that is not text)."""
    steps = getattr(pipeline, "named_steps", {})
    spec = (getattr(steps.get("features"), "kw_args", None) or {}).get("spec")
    encode = steps.get("encode")
    if spec is None or len(steps) != 3 or not hasattr(encode, "transformers_"):
        return None
    numeric, categorical = [], []
    for name, transformer, columns in encode.transformers_:
        if name == "num" and _passthrough(transformer):
            numeric = list(columns)
        elif name == "cat" and type(transformer).__name__ == "OrdinalEncoder":
            categorical = list(zip(columns, transformer.categories_, strict=True))
            if transformer.get_params().get("unknown_value") != -1:
                return None
        elif name != "remainder" or transformer != "drop":
            return None
    if numeric != spec.numeric_out or [c for c, _ in categorical] != spec.categorical_out:
        return None
    categories = {}
    for column, values in categorical:
        known = list(values)
        while known and (known[-1] is None or (isinstance(known[-1], float) and known[-1] != known[-1])):
            known.pop()  # missing values (None, NaN) come last, coded -1
        if not all(isinstance(v, str) for v in known) or known != sorted(known):
            return None
        categories[column] = known
    encoder = encoder_class()(spec)
    encoder.categories_ = categories
    encoder.n_features_out_ = len(spec.output_columns)
    return encoder


def _passthrough(transformer: Any) -> bool:
    """A column transformer's ``passthrough`` (fitted, it is an identity ``FunctionTransformer``)."""
    if isinstance(transformer, str):
        return transformer == "passthrough"
    return type(transformer).__name__ == "FunctionTransformer" and transformer.func is None


class Scorer:
    """Scores of Arrow rows from a fitted pipeline: its :class:`FeatureEncoder` and XGBoost estimator called
    directly (``fast``), or the pipeline itself on a pandas frame."""

    def __init__(self, pipeline: Any, task: str) -> None:
        self.pipeline = pipeline
        self.task = task
        self.encoder: Any = None
        self.estimator: Any = None
        steps = getattr(pipeline, "steps", None)
        estimator = steps[-1][1] if steps else None
        if estimator is not None and hasattr(estimator, "get_booster"):
            if len(steps) == 2 and isinstance(steps[0][1], encoder_class()):
                self.encoder = steps[0][1]
            else:
                self.encoder = _legacy_encoder(pipeline)
            self.estimator = estimator if self.encoder is not None else None
        self._checked = False

    @property
    def fast(self) -> bool:
        return self.encoder is not None

    def _fast(self, rows: Any) -> np.ndarray:
        from pipelines.core.model import predict_scores

        return predict_scores(self.estimator, self.encoder.transform(rows), self.task)

    def _slow(self, rows: Any) -> np.ndarray:
        import pyarrow as pa

        from pipelines.core.model import predict_scores

        frame = rows.to_pandas() if isinstance(rows, pa.Table) else rows
        return predict_scores(self.pipeline, frame, self.task)

    def __call__(self, rows: Any) -> np.ndarray:
        """Scores of ``rows`` (an Arrow table or a pandas frame), float64.

        The first call checks the fast path against the pipeline on up to
        ``CHECK_ROWS`` of the rows: any difference and this scorer uses the
        pipeline from then on (a model this module does not read right is
        slow, never wrong).
        """
        import numpy as np

        if not len(rows):
            return np.array([], dtype="float64")
        if self.fast and not self._checked:
            sample = rows.slice(0, CHECK_ROWS) if hasattr(rows, "slice") else rows.iloc[:CHECK_ROWS]
            fast, slow = self._fast(sample), self._slow(sample)
            self._checked = True
            if not np.array_equal(np.asarray(fast, "float64"), np.asarray(slow, "float64"), equal_nan=True):
                log.warning("the fast scoring path disagrees with the model's pipeline: scoring through the pipeline")
                self.encoder = None
        scores = self._fast(rows) if self.fast else self._slow(rows)
        return np.asarray(scores, dtype="float64")


#: Rows the fast path is checked on against the pipeline, once per loaded model.
CHECK_ROWS = 256
