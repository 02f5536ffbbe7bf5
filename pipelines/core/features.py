"""Features in one place, shared by training and scoring.

``make_features`` turns raw validated rows into the model's input columns; it
is the first step of the logged model's pipeline, so
``mlflow.pyfunc.load_model(uri).predict(validated_rows)`` works on raw rows and
training and scoring cannot drift apart.

Derived features are named functions of raw columns (the registry below); a
model config lists the ones it uses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipelines.core.errors import ConfigError

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


def is_calendar(name: str) -> bool:
    """Whether a feature is a calendar position (drifts by construction between days)."""
    return (name in DERIVED and DERIVED[name].calendar) or name in CALENDAR_COLUMNS


@dataclass(frozen=True)
class FeatureSpec:
    """The model's inputs (picklable: it travels inside the logged model)."""

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    derived: tuple[str, ...]

    @property
    def numeric_out(self) -> list[str]:
        return [*self.numeric, *(d for d in self.derived if DERIVED[d].kind == "numeric")]

    @property
    def categorical_out(self) -> list[str]:
        return [*self.categorical, *(d for d in self.derived if DERIVED[d].kind == "categorical")]

    @property
    def raw_inputs(self) -> list[str]:
        """Raw columns the features are computed from (the model's input schema)."""
        cols = [*self.numeric, *self.categorical]
        for d in self.derived:
            cols.extend(DERIVED[d].inputs)
        return list(dict.fromkeys(cols))

    @property
    def output_columns(self) -> list[str]:
        return [*self.numeric_out, *self.categorical_out]


def feature_spec(project: ProjectConfig, contract_columns: list[str] | None = None) -> FeatureSpec:
    """The project's feature spec, checked against the registry and the contract."""
    unknown = [d for d in project.features.derived if d not in DERIVED]
    if unknown:
        raise ConfigError(f"{project.source}: features.derived: unknown {unknown} (known: {sorted(DERIVED)})")
    spec = FeatureSpec(
        tuple(project.features.numeric), tuple(project.features.categorical), tuple(project.features.derived)
    )
    if contract_columns is not None:
        missing = [c for c in spec.raw_inputs if c not in contract_columns]
        if missing:
            raise ConfigError(f"{project.source}: features: columns {missing} are not in the data contract")
        if project.target.column in spec.raw_inputs:
            raise ConfigError(f"{project.source}: features: the target {project.target.column!r} is a feature")
    return spec


def make_features(df: pd.DataFrame, spec: FeatureSpec) -> pd.DataFrame:
    """Raw validated rows -> the model's feature frame (numeric float64, categorical string)."""
    import pandas as pd

    missing = [c for c in spec.raw_inputs if c not in df.columns]
    if missing:
        raise ConfigError(f"input rows lack feature columns {missing}")
    out: dict[str, Any] = {}
    for col in spec.numeric:
        out[col] = pd.to_numeric(df[col], errors="coerce").astype("float64")
    for name in spec.derived:
        out[name] = DERIVED[name].fn(df)
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
