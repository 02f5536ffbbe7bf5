"""Features in one place, shared by training and scoring.

Raw validated rows become the model's inputs inside the logged pipeline, so
``mlflow.pyfunc.load_model(uri).predict(validated_rows)`` works on raw rows and
training and scoring cannot drift apart. Two readings of the same features:

- :func:`feature_columns`, on Arrow arrays (or a pandas frame), is what an
  XGBoost pipeline's :class:`~pipelines.core.encoder.FeatureEncoder` fits and
  scores on: no Python work per value.
- :func:`make_features`, on a pandas frame, is the first step of a
  scikit-learn estimator's pipeline and of XGBoost pipelines logged before the
  encoder, and what drift monitoring and the gate's slices compute; its values
  never change under those pipelines.

Derived features are named functions of raw columns (the registry below), which
a model config lists under ``features.derived``, or expressions the config
declares itself under ``features.expressions`` (safe DuckDB scalar
expressions, :mod:`pipelines.core.expressions`). Both are treated alike
everywhere: they are model inputs computed from raw rows, of a kind (numeric
or categorical), possibly calendar positions that drift monitoring leaves out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipelines.core.errors import ConfigError
from pipelines.core.expressions import CONTRACT_TYPES, Expression, check

if TYPE_CHECKING:
    import pandas as pd

    from pipelines.core.config import ProjectConfig


class Columns:
    """The raw rows' columns as Arrow arrays and numbers, whatever the rows are (an Arrow table or a pandas frame).

    Each column is converted once and kept: ``values`` is the column as Arrow (a dictionary column decoded),
    ``number`` the values as float64 with NaN for null (pandas' ``to_numeric(errors="coerce")``
    for text), ``key`` the values as category keys (strings; a whole number is written
    without a fraction, so ``5`` and ``5.0`` are one category, whichever way the rows were typed).
    """

    def __init__(self, rows: Any) -> None:
        self.rows = rows
        self._values: dict[str, Any] = {}
        self._numbers: dict[str, Any] = {}
        self._keys: dict[str, Any] = {}

    def values(self, name: str) -> Any:
        import pyarrow as pa

        if name not in self._values:
            if isinstance(self.rows, pa.Table):
                arr = self.rows.column(name).combine_chunks()
            else:
                series = self.rows[name]
                try:
                    arr = pa.Array.from_pandas(series)
                except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
                    # Mixed Python objects (a number beside a text): each as its text.
                    arr = pa.array([None if _missing(v) else str(v) for v in series], pa.string())
            if pa.types.is_dictionary(arr.type):
                arr = arr.dictionary_decode()
            self._values[name] = arr
        return self._values[name]

    def number(self, name: str) -> Any:
        if name not in self._numbers:
            self._numbers[name] = _as_number(self.values(name))
        return self._numbers[name]

    def key(self, name: str) -> Any:
        if name not in self._keys:
            self._keys[name] = category_keys(self.values(name))
        return self._keys[name]


def _missing(value: Any) -> bool:
    import pandas as pd

    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # an array-like value is a value
        return False


def _as_number(arr: Any) -> Any:
    """An Arrow array as float64 numbers, NaN for null or not a number (as ``pd.to_numeric(errors="coerce")``)."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    t = arr.type
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t) or pa.types.is_null(t):
        # Unsafe: an integer beyond 2**53 rounds to the nearest float, as pandas reads it.
        return np.asarray(pc.cast(arr, pa.float64(), safe=False).to_numpy(zero_copy_only=False), dtype="float64")
    if pa.types.is_decimal(t):
        return np.asarray(pc.cast(arr, pa.float64(), safe=False).to_numpy(zero_copy_only=False), dtype="float64")
    # Text, dates, times: pandas' own coercion, as the rows were read before.
    return pd.to_numeric(arr.to_pandas(), errors="coerce").to_numpy(dtype="float64", na_value=np.nan)


def category_keys(arr: Any) -> Any:
    """An Arrow array as category keys: strings, null for missing; a whole number without a fraction."""
    import pyarrow as pa
    import pyarrow.compute as pc

    t = arr.type
    if pa.types.is_string(t):
        return arr
    if pa.types.is_large_string(t) or pa.types.is_boolean(t) or pa.types.is_null(t):
        return pc.cast(arr, pa.string())
    if pa.types.is_integer(t):
        # As the float pandas makes of an integer column with a missing value, so a key never depends on
        # which of the two the rows were: exact up to 2**53, the float's text beyond.
        arr, t = pc.cast(arr, pa.float64(), safe=False), pa.float64()
    if pa.types.is_floating(t):
        finite = pc.is_finite(arr)  # null for null; NaN and infinities are missing
        whole = pc.and_kleene(finite, pc.equal(pc.floor(arr), arr))
        whole = pc.and_kleene(whole, pc.less_equal(pc.abs(arr), pa.scalar(2.0**53)))
        as_int = pc.cast(pc.if_else(whole, arr, pa.scalar(0.0)), pa.int64())
        text = pc.if_else(whole, pc.cast(as_int, pa.string()), pc.cast(arr, pa.string()))
        return pc.if_else(pc.fill_null(finite, False), text, pa.scalar(None, pa.string()))
    try:
        return pc.cast(arr, pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return pa.array([None if _missing(v) else str(v) for v in arr.to_pylist()], pa.string())


#: The calendar days pandas can hold (``pd.Timestamp.min`` and ``max`` fall inside the first and last).
_FIRST_DAY, _LAST_DAY = "1677-09-22", "2262-04-11"


def _days(cols: Columns) -> Any:
    """Days since 1970-01-01 of the date ``year``-``month``-``day`` (float64; NaN when that is no calendar day,
    or a day pandas cannot hold)."""
    import numpy as np

    y, m, d = cols.number("year"), cols.number("month"), cols.number("day")
    if len(y) > 1024:  # a partition holds few distinct days: compute each once
        with np.errstate(invalid="ignore"):
            plain = (y == np.floor(y)) & (m == np.floor(m)) & (d == np.floor(d))
            plain &= (y >= 1677) & (y <= 2262) & (m >= 1) & (m <= 12) & (d >= 1) & (d <= 31)
        if plain.all():  # whole numbers in range: (y, m, d) -> y * 1024 + m * 64 + d is one-to-one
            distinct, inverse = np.unique((y * 16 + m) * 64 + d, return_inverse=True)
            y, m, d = np.floor_divide(distinct, 1024), np.mod(np.floor_divide(distinct, 64), 16), np.mod(distinct, 64)
            days, years = _days_of(y, m, d)
            return days[inverse], years[inverse]
    return _days_of(y, m, d)


def _days_of(y: Any, m: Any, d: Any) -> Any:
    import numpy as np

    with np.errstate(invalid="ignore"):
        ok = np.isfinite(y) & np.isfinite(m) & np.isfinite(d)
        ok &= (y == np.floor(y)) & (m == np.floor(m)) & (d == np.floor(d))
        ok &= (y >= 1677) & (y <= 2262) & (m >= 1) & (m <= 12) & (d >= 1) & (d <= 31)
    yi = np.where(ok, y, 1970).astype("int64")
    mi = np.where(ok, m, 1).astype("int64")
    di = np.where(ok, d, 1).astype("int64")
    month = (yi - 1970) * 12 + (mi - 1)  # months since 1970-01
    first = month.astype("datetime64[M]").astype("datetime64[D]")
    date = first + (di - 1).astype("timedelta64[D]")
    ok &= date.astype("datetime64[M]") == month.astype("datetime64[M]")  # 31 April is no day
    ok &= (date >= np.datetime64(_FIRST_DAY)) & (date <= np.datetime64(_LAST_DAY))
    return np.where(ok, date.astype("int64").astype("float64"), np.nan), yi


def _day_of_week(cols: Columns) -> Any:
    import numpy as np

    days, _ = _days(cols)
    return np.mod(days + 3, 7)  # 1970-01-01 was a Thursday; Monday is 0, as pandas counts


def _day_of_year(cols: Columns) -> Any:

    days, year = _days(cols)
    jan1 = (year - 1970).astype("datetime64[Y]").astype("datetime64[D]").astype("int64")
    return days - jan1 + 1


def _hhmm_to_minutes(v: Any) -> Any:
    import numpy as np

    return np.floor_divide(v, 100) * 60 + np.mod(v, 100)


def _sched_dep_minutes(cols: Columns) -> Any:
    return _hhmm_to_minutes(cols.number("sched_dep_time"))


def _sched_arr_minutes(cols: Columns) -> Any:
    return _hhmm_to_minutes(cols.number("sched_arr_time"))


def _route(cols: Columns) -> Any:
    import pyarrow.compute as pc

    return pc.binary_join_element_wise(cols.key("origin"), cols.key("dest"), "-")


# The same features on a pandas frame, as make_features has always computed them (pipelines logged before
# the encoder call make_features by name: its values must never change under them).


def _frame_date(df: pd.DataFrame) -> pd.Series:
    import pandas as pd

    return pd.to_datetime({"year": df["year"], "month": df["month"], "day": df["day"]}, errors="coerce")


def _frame_hhmm(values: pd.Series) -> pd.Series:
    v = values.astype("float64")
    return (v // 100) * 60 + (v % 100)


FRAME_DERIVED: dict[str, Callable[[pd.DataFrame], pd.Series]] = {
    "day_of_week": lambda df: _frame_date(df).dt.dayofweek.astype("float64"),
    "day_of_year": lambda df: _frame_date(df).dt.dayofyear.astype("float64"),
    "sched_dep_minutes": lambda df: _frame_hhmm(df["sched_dep_time"]),
    "sched_arr_minutes": lambda df: _frame_hhmm(df["sched_arr_time"]),
    "route": lambda df: df["origin"].astype("string") + "-" + df["dest"].astype("string"),
}


@dataclass(frozen=True)
class Derived:
    """A derived feature: its inputs, its kind and how to compute it."""

    inputs: tuple[str, ...]
    kind: str  # "numeric" (float64 numbers) or "categorical" (an Arrow array of strings)
    fn: Callable[[Columns], Any]
    #: Calendar position: a daily partition holds one value, so it "drifts" by construction.
    calendar: bool = False


DERIVED: dict[str, Derived] = {
    "day_of_week": Derived(("year", "month", "day"), "numeric", _day_of_week, calendar=True),
    "day_of_year": Derived(("year", "month", "day"), "numeric", _day_of_year, calendar=True),
    "sched_dep_minutes": Derived(("sched_dep_time",), "numeric", _sched_dep_minutes),
    "sched_arr_minutes": Derived(("sched_arr_time",), "numeric", _sched_arr_minutes),
    "route": Derived(("origin", "dest"), "categorical", _route),
}


#: Columns the drift reference adds beside the features (names no feature can take: not identifiers).
PREDICTION_COLUMN = "__prediction__"
TARGET_COLUMN = "__target__"

#: Raw column names that are calendar positions (left out of drift monitoring by default).
CALENDAR_COLUMNS = frozenset({"year", "quarter", "month", "week", "day", "day_of_week", "day_of_year", "date", "ds"})


def is_calendar(name: str, spec: FeatureSpec | None = None) -> bool:
    """Whether a feature is a calendar position (drifts by construction between days).

    An expression of ``spec`` is one when it is marked ``calendar``, whatever its name (an expression
    named ``week`` or ``day_of_year`` with ``calendar: false`` is not); any other name is one when it is
    a registered derived feature marked so, or a name of :data:`CALENDAR_COLUMNS`.
    """
    if spec is not None:
        declared = [e.calendar for e in spec.expressions if e.name == name]
        if declared:
            return declared[0]
    return (name in DERIVED and DERIVED[name].calendar) or name in CALENDAR_COLUMNS


@dataclass(frozen=True)
class FeatureSpec:
    """The model's inputs (picklable: it travels inside the logged model).

    ``expressions`` (the config's expression features) has a plain default,
    which dataclasses keep as a class attribute: a spec pickled before the
    field existed has no such key in its state, unpickles with the default
    (none) and works unchanged. Every field added later needs one too.
    """

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    derived: tuple[str, ...]
    expressions: tuple[Expression, ...] = ()

    def _derived_of(self, kind: str) -> list[str]:
        registered = [d for d in self.derived if DERIVED[d].kind == kind]
        return [*registered, *(e.name for e in self.expressions if e.kind == kind)]

    @property
    def numeric_out(self) -> list[str]:
        return [*self.numeric, *self._derived_of("numeric")]

    @property
    def categorical_out(self) -> list[str]:
        return [*self.categorical, *self._derived_of("categorical")]

    @property
    def raw_inputs(self) -> list[str]:
        """Raw columns the features are computed from (the model's input schema)."""
        cols = [*self.numeric, *self.categorical]
        for d in self.derived:
            cols.extend(DERIVED[d].inputs)
        for e in self.expressions:
            cols.extend(e.inputs)
        return list(dict.fromkeys(cols))

    @property
    def output_columns(self) -> list[str]:
        return [*self.numeric_out, *self.categorical_out]


def feature_spec(
    project: ProjectConfig, contract_columns: list[str] | None = None, column_types: dict[str, str] | None = None
) -> FeatureSpec:
    """The project's feature spec, checked against the registry and the contract.

    Every expression is checked (:func:`pipelines.core.expressions.check`);
    with ``contract_columns``, also that the columns it reads are the
    contract's. An expression reads each column as its contract type
    (``column_types``: column -> logical type; by default the project's
    contract's, loaded only when the project declares expressions), so it
    computes the same on any frame of the rows, whatever their pandas dtypes.

    Raises:
        ConfigError: an unknown derived feature, a refused expression, a column not in the
            contract, or the target among the inputs; the message names the config and the feature.
    """
    unknown = [d for d in project.features.derived if d not in DERIVED]
    if unknown:
        raise ConfigError(f"{project.source}: features.derived: unknown {unknown} (known: {sorted(DERIVED)})")
    target = project.target.column
    if project.features.expressions and column_types is None:
        from pipelines.core.contracts import contract_for

        column_types = {c.name: c.logical_type for c in contract_for(project).columns}
    expressions = []
    for name, feature in project.features.expressions.items():
        where = f"{project.source}: features.expressions.{name}"
        inputs = check(feature.expr, contract_columns, where=where)
        if target in inputs:
            raise ConfigError(f"{where}: {feature.expr!r} reads the target {target!r}")
        types = tuple(CONTRACT_TYPES.get((column_types or {}).get(c, ""), "") for c in inputs)
        expressions.append(Expression(name, feature.expr, feature.kind, feature.calendar, inputs, types))
    spec = FeatureSpec(
        tuple(project.features.numeric),
        tuple(project.features.categorical),
        tuple(project.features.derived),
        tuple(expressions),
    )
    if contract_columns is not None:
        missing = [c for c in spec.raw_inputs if c not in contract_columns]
        if missing:
            raise ConfigError(f"{project.source}: features: columns {missing} are not in the data contract")
        if target in spec.raw_inputs:
            raise ConfigError(f"{project.source}: features: the target {target!r} is a feature")
    return spec


def feature_columns(rows: Any, spec: FeatureSpec) -> dict[str, Any]:
    """Raw rows (an Arrow table or a pandas frame) -> the model's inputs, in ``spec.output_columns`` order:
    numeric features as float64 numbers (NaN for missing), categorical ones as category keys (Arrow strings,
    :func:`category_keys`). No Python work per value: Arrow kernels, NumPy and one DuckDB query. What
    :class:`~pipelines.core.encoder.FeatureEncoder` fits and scores on, from pandas rows in training and
    Arrow rows in scoring alike.
    """
    import pyarrow as pa

    from pipelines.core.expressions import evaluate_arrow

    cols = Columns(rows)
    names = rows.column_names if isinstance(rows, pa.Table) else list(rows.columns)
    missing = [c for c in spec.raw_inputs if c not in names]
    if missing:
        raise ConfigError(f"input rows lack feature columns {missing}")
    out: dict[str, Any] = {col: cols.number(col) for col in spec.numeric}
    for name in spec.derived:
        out[name] = DERIVED[name].fn(cols)
    for name, arr in evaluate_arrow(rows, spec.expressions).items():
        out[name] = _as_number(arr) if name in spec.numeric_out else category_keys(arr)
    for col in spec.categorical:
        out[col] = cols.key(col)
    return {name: out[name] for name in spec.output_columns}


def make_features(df: pd.DataFrame, spec: FeatureSpec) -> pd.DataFrame:
    """Raw validated rows -> the feature frame (numeric float64, categorical objects, None for missing).

    What drift monitoring, the gate's slices and the pipelines logged before
    :class:`~pipelines.core.encoder.FeatureEncoder` compute (those pipelines
    call this function by name, so its values are frozen: pandas' coercion and
    dates, raw categorical values as they are). A model's own inputs are
    :func:`feature_columns`, which agree with it on every validated row; they
    differ only where pandas' reading is an accident (``month 0, day 101`` is
    2013-01-01 here, no day there). Expression features are computed in one
    DuckDB query (:func:`pipelines.core.expressions.evaluate`); a value an
    expression cannot compute on a row is null.
    """
    import pandas as pd

    from pipelines.core.expressions import evaluate

    missing = [c for c in spec.raw_inputs if c not in df.columns]
    if missing:
        raise ConfigError(f"input rows lack feature columns {missing}")
    out: dict[str, Any] = {}
    for col in spec.numeric:
        out[col] = pd.to_numeric(df[col], errors="coerce").astype("float64")
    for name in spec.derived:
        out[name] = FRAME_DERIVED[name](df)
    out.update(evaluate(df, spec.expressions).items())
    for col in spec.categorical:
        out[col] = df[col]
    frame = pd.DataFrame(out, index=df.index)
    for col in spec.categorical_out:
        frame[col] = frame[col].astype("object").where(frame[col].notna(), None)
    return frame[spec.output_columns]


def make_target(df: pd.DataFrame, project: ProjectConfig) -> pd.Series:
    """The label (classification: 1 when the target column >= threshold) or value; NaN when unknown."""
    import numpy as np

    y = df[project.target.column].astype("float64")
    if project.target.task == "classification":
        return y.ge(project.target.positive_threshold).astype("float64").where(y.notna(), np.nan)
    return y
