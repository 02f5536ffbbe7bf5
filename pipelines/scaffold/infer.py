"""A new dataset's contract, inferred from a sample: columns and types, then rules.

**Types.** A column's logical type is the first of ``boolean``, ``integer``,
``number``, ``date``, ``timestamp``, ``string`` that reads every sample value
with the validation step's own coercion
(:func:`pipelines.ingest.landing.coerce_column`), so no sample value is a type
mismatch under the contract. Text must also look the part: ``true``/``false``
for a boolean, digits without a leading zero for an integer (``02134`` is a
code, kept as text), ``YYYY-MM-DD`` for a date, a date and a time for a
timestamp. A Parquet column keeps its stored type. Only the columns of every
sample file are the contract's (a column some files lack would quarantine
those files' rows as ``missing_column``).

**Rules** (see :func:`draft_contract`): ``required`` where the sample has no
null; the partition-date rule when year/month/day columns, a date column or a
timestamp column (in UTC or a fixed-offset zone) put every row on its
delivery's day; a natural key when a column, or the fewest columns, are unique
within every day; the sample's ranges and small sets of allowed values as
warnings; a row count with wide bounds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from itertools import combinations
from typing import TYPE_CHECKING, Any

from pipelines.core.errors import ConfigError
from pipelines.scaffold.profile import ColumnInfo, Frames, profile

if TYPE_CHECKING:
    import pyarrow as pa

    from pipelines.scaffold.sample import Sample

_INTEGER = re.compile(r"[+-]?\d+")
_CODE = re.compile(r"[+-]?0\d")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}.*")
#: Columns searched for a compound natural key (the first ones of the contract, of key-like types).
KEY_SEARCH_COLUMNS = 14


@dataclass
class ContractDraft:
    """What the contract will say, before it is rendered."""

    dataset: str
    columns: dict[str, ColumnInfo]
    primary_key: list[str]
    #: ``partitionDateMatches`` arguments, or None.
    partition: dict[str, str] | None
    row_count: tuple[int, int]
    #: Columns of some sample files left out of the contract, with why.
    dropped: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    #: The target of the project it is written for: never required (an outcome may arrive after its row).
    outcome: str | None = None

    @property
    def types(self) -> dict[str, str]:
        return {c.name: c.logical_type for c in self.columns.values()}

    @property
    def partition_columns(self) -> list[str]:
        if not self.partition:
            return []
        return [self.partition[k] for k in ("column", "year", "month", "day") if k in self.partition]

    @property
    def timezones(self) -> dict[str, str]:
        p = self.partition or {}
        return {p["column"]: p["timezone"]} if "timezone" in p else {}


# ---- types


def _kind(typ: pa.DataType) -> str | None:
    import pyarrow as pa

    t = pa.types
    if t.is_string(typ) or t.is_large_string(typ) or t.is_null(typ):
        return "text"
    for kind, test in (
        ("integer", t.is_integer),
        ("number", lambda x: t.is_floating(x) or t.is_decimal(x)),
        ("boolean", t.is_boolean),
        ("date", t.is_date),
        ("timestamp", t.is_timestamp),
    ):
        if test(typ):
            return kind
    return None


def _reads_as(arrays: list[pa.ChunkedArray], ltype: str) -> bool:
    """Whether validation's coercion reads every value of every array as ``ltype`` (UTC for timestamps)."""
    from pipelines.ingest.landing import coerce_column

    return all(not coerce_column(a, ltype)[1].any() for a in arrays)


def _text_type(arrays: list[pa.ChunkedArray]) -> str:
    """The narrowest logical type whose look and coercion fit every text value."""
    import pandas as pd

    texts = pd.concat([a.to_pandas() for a in arrays], ignore_index=True).dropna().astype(str)
    if texts.empty:
        return "string"
    lower = set(texts.str.strip().str.lower().unique())
    if lower <= {"true", "false"} and _reads_as(arrays, "boolean"):
        return "boolean"
    if texts.str.fullmatch(_INTEGER.pattern).all():
        # Digits: a count or a measurement, unless a leading zero or the size says code or identifier.
        if texts.str.match(_CODE.pattern).any() or not _reads_as(arrays, "integer"):
            return "string"
        return "integer"
    looks = {
        "number": True,
        "date": texts.str.fullmatch(_DATE.pattern).all(),
        "timestamp": texts.str.fullmatch(_TIMESTAMP.pattern).all(),
    }
    for ltype, plausible in looks.items():
        if plausible and _reads_as(arrays, ltype):
            return ltype
    return "string"


def infer_types(sample: Sample) -> tuple[dict[str, str], dict[str, str]]:
    """``(types, dropped)``: each contract column's logical type, and the columns left out with why."""
    tables = [t for d in sample.days for _, t in d.tables if t.num_rows or t.num_columns]
    order = list(dict.fromkeys(n for t in tables for n in t.column_names))
    types: dict[str, str] = {}
    dropped: dict[str, str] = {}
    for name in order:
        missing = sum(1 for t in tables if name not in t.column_names)
        if missing:
            dropped[name] = f"absent from {missing} of {len(tables)} sample file(s)"
            continue
        arrays = [t.column(name) for t in tables]
        kinds = {_kind(a.type) for a in arrays}
        if None in kinds:
            dropped[name] = f"type {arrays[0].type} has no contract type"
        elif kinds == {"text"}:
            types[name] = _text_type(arrays)
        elif kinds <= {"integer", "number"}:
            types[name] = "number" if "number" in kinds else "integer"
        elif len(kinds) == 1:
            types[name] = kinds.pop()
        else:
            types[name] = _text_type([a.cast("string") for a in arrays])
    if not types:
        raise ConfigError(f"sample {sample.path}: no column is in every file; nothing to make a contract of")
    _refuse_reserved(sample, list(types))
    return types, dropped


def _refuse_reserved(sample: Sample, columns: list[str]) -> None:
    """A column named as the system names one of its own (``ds``) cannot be a contract's: say so now."""
    from pipelines.core.contracts import RESERVED_COLUMNS

    for name in columns:
        if name in RESERVED_COLUMNS:
            why = RESERVED_COLUMNS.get(name) if isinstance(RESERVED_COLUMNS, dict) else None
            raise ConfigError(
                f"sample {sample.path}: column {name!r} has a reserved name{f' ({why})' if why else ''}: "
                "a contract cannot hold it; rename it upstream (nothing written)"
            )


def typed_frames(sample: Sample, types: dict[str, str], timezones: dict[str, str] | None = None) -> Frames:
    """Each sample day's rows, every column coerced to its type as validation would."""
    import pandas as pd

    from pipelines.ingest.landing import coerce_column

    out = []
    for day in sample.days:
        parts = []
        for _, table in day.tables:
            if not table.num_rows:
                continue
            zones = timezones or {}
            cols = {
                n: coerce_column(table.column(n), t, zones.get(n, "UTC"))[0]
                for n, t in types.items()
                if n in table.column_names
            }
            parts.append(pd.DataFrame({n: s.reset_index(drop=True) for n, s in cols.items()}))
        if parts:
            out.append((day.ds, pd.concat(parts, ignore_index=True)))
    return out


# ---- rules


def _day_from_data(frames: Frames, types: dict[str, str]) -> str | None:
    """The one day a single undated delivery's rows are all on, read from a date or year/month/day columns."""
    import pandas as pd

    whole = pd.concat([f for _, f in frames], ignore_index=True)
    for name, ltype in types.items():
        if ltype == "date" and whole[name].notna().all() and whole[name].nunique() == 1:
            return whole[name].iloc[0].date().isoformat()
    if all(types.get(p) == "integer" for p in ("year", "month", "day")):
        parts = whole[["year", "month", "day"]].drop_duplicates()
        if len(parts) == 1 and parts.notna().all(axis=None):
            try:
                return pd.Timestamp(**{k: int(v) for k, v in parts.iloc[0].items()}).date().isoformat()
            except ValueError:
                return None
    return None


def _on_day(values: Any, ds: str, zone: str | None) -> bool:
    """Whether every present value falls on the partition day (a date; or a UTC instant seen in ``zone``)."""
    from pipelines.core.contracts import Rule
    from pipelines.ingest.rules import partition_bounds

    present = values.dropna()
    if present.empty:
        return False
    params = {"column": "c", "logical_type": "timestamp" if zone else "date", "timezone": zone or "UTC"}
    start, end = partition_bounds(Rule("r", "partition_date", "critical", "halt", ("c",), params), ds)
    return bool(((present >= start) & (present < end)).all())


def _zones() -> list[str]:
    """UTC, then the fixed-offset IANA zones nearest to it (``Etc/GMT+5`` is UTC-05:00)."""
    out = ["UTC"]
    for hours in range(1, 15):
        out += [f"Etc/GMT-{hours}"] if hours > 12 else [f"Etc/GMT+{hours}", f"Etc/GMT-{hours}"]
    return out


def partition_rule(sample: Sample, frames: Frames, types: dict[str, str]) -> dict[str, str] | None:
    """``partitionDateMatches`` arguments every sample row satisfies on its day, or None.

    Tried in order: a date column, the year/month/day columns, a timestamp
    column in UTC and then in fixed-offset zones (values delivered without an
    offset are read in the zone, so UTC always fits those).
    """
    dated = [(ds, f) for ds, f in frames if ds]
    if not dated:
        return None
    for name, ltype in types.items():
        if ltype == "date" and all(_on_day(f[name], ds, None) for ds, f in dated):
            return {"column": name}
    if all(types.get(p) == "integer" for p in ("year", "month", "day")):
        parts = ("year", "month", "day")
        if all(
            f[list(parts)].notna().all(axis=None) and (f[list(parts)] == [int(x) for x in ds.split("-")]).all(axis=None)
            for ds, f in dated
        ):
            return {"year": "year", "month": "month", "day": "day"}
    for name, ltype in types.items():
        if ltype != "timestamp":
            continue
        for zone in _zones():
            zoned = typed_frames(sample, {name: "timestamp"}, {name: zone})
            if all(_on_day(f[name], ds, zone) for ds, f in zoned if ds):
                return {"column": name, "timezone": zone}
    return None


def _unique(frames: Frames, cols: list[str]) -> bool:
    return all(f[cols].notna().all(axis=None) and not f.duplicated(subset=cols).any() for _, f in frames)


def natural_key(
    frames: Frames, infos: dict[str, ColumnInfo], partition_cols: list[str], outcome: str | None = None
) -> list[str]:
    """The fewest columns unique within every day (an ID-like one first), with the day's columns prepended
    when the key repeats across days; ``[]`` when no combination of up to three columns is. The outcome
    (a project's target) is never part of it, nor a column named like one the scores table adds beside
    the key (:data:`~pipelines.core.contracts.SCORES_COLUMNS`: the contract would not load)."""
    import pandas as pd

    from pipelines.core.contracts import SCORES_COLUMNS

    usable = [
        c.name
        for c in infos.values()
        if c.required
        and c.logical_type not in ("number", "boolean")
        and c.name != outcome
        and c.name not in SCORES_COLUMNS
    ]
    singles = [n for n in usable if infos[n].unique_per_day]
    key: list[str] = []
    if singles:
        key = [sorted(singles, key=lambda n: (not infos[n].id_like, infos[n].logical_type != "string"))[0]]
    else:
        search = [n for n in usable if n not in partition_cols and infos[n].distinct > 1][:KEY_SEARCH_COLUMNS]
        for size in (2, 3):
            key = next((list(c) for c in combinations(search, size) if _unique(frames, list(c))), [])
            if key:
                break
    if key and partition_cols and not set(partition_cols) & set(key):
        whole = pd.concat([f for _, f in frames], ignore_index=True)
        if whole.duplicated(subset=key).any():
            # The day's columns join the key, unless one is named like a scores column: then no key.
            key = [] if set(partition_cols) & set(SCORES_COLUMNS) else [*partition_cols, *key]
    return key


def row_count_bounds(frames: Frames) -> tuple[int, int]:
    """Wide bounds around the sample's rows per day: a tenth of the fewest, ten times the most."""
    counts = [len(f) for _, f in frames] or [1]
    return max(1, min(counts) // 10), max(10, max(counts) * 10)


def draft_contract(dataset: str, sample: Sample, outcome: str | None = None) -> tuple[ContractDraft, Frames]:
    """The contract a sample suggests, and the sample's rows typed by it (``outcome``: a project's target)."""
    types, dropped = infer_types(sample)
    frames = typed_frames(sample, types)
    notes = [
        f"{d.ds or d.folder}: no data row (validation halts such a delivery: empty_file)"
        for d in sample.days
        if not d.rows
    ]
    if len(sample.days) == 1 and sample.days[0].ds is None:
        day = _day_from_data(frames, types)
        if day:
            sample.days[0].ds = day
            frames = [(day, frames[0][1])]
            notes.append(f"the sample's day ({day}) was read from its rows: its folder does not name it")
    partition = partition_rule(sample, frames, types)
    zones = {partition["column"]: partition["timezone"]} if partition and "timezone" in partition else {}
    if zones:
        frames = typed_frames(sample, types, zones)
    infos = profile(frames, types)
    draft = ContractDraft(dataset, infos, [], partition, row_count_bounds(frames), dropped, notes, outcome)
    draft.primary_key = natural_key(frames, infos, draft.partition_columns, outcome)
    return draft, frames
