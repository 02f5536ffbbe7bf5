"""Features in one place, shared by training and scoring.

``make_features`` turns raw validated rows into the model's input columns; it
is the first step of the logged model's pipeline, so
``mlflow.pyfunc.load_model(uri).predict(validated_rows)`` works on raw rows and
training and scoring cannot drift apart.

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
from pipelines.core.expressions import CONTRACT_TYPES, Expression, check, evaluate

if TYPE_CHECKING:
    import pandas as pd

    from pipelines.core.config import ProjectConfig


def _date(df: pd.DataFrame) -> pd.Series:
    import pandas as pd

    return pd.to_datetime({"year": df["year"], "month": df["month"], "day": df["day"]}, errors="coerce")


def _day_of_week(df: pd.DataFrame) -> pd.Series:
    return _date(df).dt.dayofweek.astype("float64")


def _day_of_year(df: pd.DataFrame) -> pd.Series:
    return _date(df).dt.dayofyear.astype("float64")


def _hhmm_to_minutes(values: pd.Series) -> pd.Series:
    v = values.astype("float64")
    return (v // 100) * 60 + (v % 100)


def _sched_dep_minutes(df: pd.DataFrame) -> pd.Series:
    return _hhmm_to_minutes(df["sched_dep_time"])


def _sched_arr_minutes(df: pd.DataFrame) -> pd.Series:
    return _hhmm_to_minutes(df["sched_arr_time"])


def _route(df: pd.DataFrame) -> pd.Series:
    return df["origin"].astype("string") + "-" + df["dest"].astype("string")


@dataclass(frozen=True)
class Derived:
    """A derived feature: its inputs, its kind and how to compute it."""

    inputs: tuple[str, ...]
    kind: str  # "numeric" or "categorical"
    fn: Callable[[pd.DataFrame], pd.Series]
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


def make_features(df: pd.DataFrame, spec: FeatureSpec) -> pd.DataFrame:
    """Raw validated rows -> the model's feature frame (numeric float64, categorical string).

    Expression features are computed in one DuckDB query
    (:func:`pipelines.core.expressions.evaluate`); a value an expression cannot
    compute on a row is null.
    """
    import pandas as pd

    missing = [c for c in spec.raw_inputs if c not in df.columns]
    if missing:
        raise ConfigError(f"input rows lack feature columns {missing}")
    out: dict[str, Any] = {}
    for col in spec.numeric:
        out[col] = pd.to_numeric(df[col], errors="coerce").astype("float64")
    for name in spec.derived:
        out[name] = DERIVED[name].fn(df)
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
