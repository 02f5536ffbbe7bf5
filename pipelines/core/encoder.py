"""The XGBoost models' input step: raw rows (Arrow or pandas) -> one float32 matrix, with no Python work per value.

:class:`FeatureEncoder` is the first step of every XGBoost pipeline logged
since scoring reads Arrow: it computes the features
(:func:`pipelines.core.features.feature_columns`) and encodes each categorical
feature as the position of its key among the keys seen in ``fit``, sorted
(``-1`` for a key never seen, and for missing), with Arrow's ``index_in``
kernel. For text categories those are the codes scikit-learn's
``OrdinalEncoder`` gave the earlier pipelines (sorted categories, unknown and
missing ``-1``), so a model fitted on the same rows is the same model: only
the time to encode changed. (A category of numbers is keyed by its text, so
its codes follow text order.)

:class:`Scorer` turns a loaded pipeline of this layout into the scoring fast
path (Arrow rows in, scores out, no pandas). Anything else (a pipeline logged
before this encoder, a scikit-learn estimator) is scored through the pipeline
itself, exactly as it was logged: its ``make_features`` values never change.
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


class Scorer:
    """Scores of Arrow rows from a fitted pipeline: its :class:`FeatureEncoder` and XGBoost estimator called
    directly (``fast``), or any other pipeline (an earlier layout, a scikit-learn estimator) itself on a pandas
    frame, exactly as it was logged."""

    def __init__(self, pipeline: Any, task: str) -> None:
        self.pipeline = pipeline
        self.task = task
        self.encoder: Any = None
        self.estimator: Any = None
        steps = getattr(pipeline, "steps", None) or []
        if len(steps) == 2 and isinstance(steps[0][1], encoder_class()) and hasattr(steps[1][1], "get_booster"):
            self.encoder, self.estimator = steps[0][1], steps[1][1]
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
