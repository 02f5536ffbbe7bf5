"""What a sample's typed rows say about each column: nulls, distinct values, range, uniqueness.

The profile is computed on the rows as the contract types them (one pandas
frame per delivery day), for a new dataset's inferred types and an existing
dataset's contract alike; the contract draft and the project's choices
(features, target, sizes) are both read from it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

#: At most this many distinct values are listed (a string column's allowed-values suggestion).
MAX_LISTED = 20
#: A name that says "identifier".
ID_NAME = re.compile(r"(^|_)(id|uuid|guid|key)$|^id_", re.IGNORECASE)


@dataclass
class ColumnInfo:
    """One column of the sample, as its logical type reads it."""

    name: str
    logical_type: str
    rows: int = 0
    nulls: int = 0
    distinct: int = 0
    minimum: Any = None
    maximum: Any = None
    #: Sorted distinct values when there are at most :data:`MAX_LISTED`.
    values: tuple[Any, ...] = ()
    #: No null and no repeated value within any day.
    unique_per_day: bool = False
    #: Integers that run (nearly) consecutively: a row number or a sequence, not a measurement.
    sequence: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def required(self) -> bool:
        return self.rows > 0 and self.nulls == 0

    @property
    def id_like(self) -> bool:
        """An identifier rather than a measurement or a category: never a model feature."""
        if self.logical_type not in ("integer", "string"):
            return False
        if ID_NAME.search(self.name):
            return True
        if self.logical_type == "string":
            return self.distinct > 200 or self.distinct > 0.5 * max(self.rows - self.nulls, 1)
        return self.unique_per_day and self.sequence


Frames = list[tuple[str | None, "pd.DataFrame"]]


def profile(frames: Frames, types: dict[str, str]) -> dict[str, ColumnInfo]:
    """Every column's :class:`ColumnInfo` over the typed frames of the sample's days."""
    import pandas as pd

    out = {}
    whole = pd.concat([f for _, f in frames], ignore_index=True) if frames else pd.DataFrame()
    for name, ltype in types.items():
        values = whole[name] if name in whole else pd.Series([], dtype=object)
        info = ColumnInfo(name, ltype, rows=len(values), nulls=int(values.isna().sum()))
        present = values.dropna()
        info.distinct = int(present.nunique())
        if len(present) and ltype in ("integer", "number", "date", "timestamp"):
            info.minimum, info.maximum = present.min(), present.max()
        if 0 < info.distinct <= MAX_LISTED and ltype in ("string", "integer", "boolean"):
            info.values = tuple(sorted(present.unique().tolist()))
        info.unique_per_day = bool(frames) and all(
            name in f and f[name].notna().all() and f[name].is_unique for _, f in frames
        )
        if ltype == "integer" and info.distinct > 1:
            info.sequence = float(info.maximum) - float(info.minimum) + 1 <= 1.1 * info.distinct
        if info.rows and info.nulls == info.rows:
            info.notes.append("no value in the sample")
        out[name] = info
    return out


def target_values(frames: Frames, column: str) -> pd.Series:
    """The sample's known values of a column as numbers (NaN dropped)."""
    import pandas as pd

    values = pd.concat([f[column] for _, f in frames if column in f], ignore_index=True) if frames else pd.Series([])
    return pd.to_numeric(values, errors="coerce").astype("float64").dropna()
