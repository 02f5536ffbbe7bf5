"""Landed files as delivered, and their coercion to contract types.

Files are read with pyarrow, in record batches (:mod:`pipelines.ingest.batches`
streams them; this module holds what a batch is and how it is typed). CSV columns are read as strings first, so a
quarantined row keeps its original text; each column is then cast to its
contract type (fast path: one Arrow cast) and, only if that fails, coerced
value by value so that just the bad values are flagged. A file that cannot be
parsed at all (not UTF-8, malformed, truncated Parquet) is reported as a bad
file, never raised.

**Records are counted independently of the parser**, so the parser cannot
lose input unseen: a CSV file's records are its non-empty lines after the
header (counted on the bytes), a Parquet file's are the row count in its
footer. Every record then ends as a parsed row, part of a malformed record,
or *lost* (``FileRead.lost``), and lost records count against the
quarantine rate. A parsed CSV row whose values span several lines (an
unbalanced quote swallows the lines after it into one value) is flagged as
malformed and counts as every line it holds, so one stray quote can no longer
hide a file's rows. A file with no records (0 bytes, or a header only) is
*empty*, which the ``empty_file`` rule judges.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipelines.core.contracts import Contract
from pipelines.core.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import pyarrow as pa


log = logging.getLogger(__name__)

NULL_TOKENS = ["", "NA", "N/A", "NULL", "null", "NaN", "nan", "None"]
SUPPORTED_SUFFIXES = (".csv", ".csv.gz", ".parquet")


#: Decompressed size above which a ``.csv.gz`` is refused (gzip bombs).
MAX_DECOMPRESSED_BYTES = 4 << 30


@dataclass
class ParsedFile:
    """Rows of a landed file read into an Arrow table, as delivered: one batch of it (the whole file's
    counts are its :class:`~pipelines.ingest.batches.FileRead`)."""

    key: str
    name: str
    table: pa.Table
    missing_columns: list[str] = field(default_factory=list)
    extra_columns: list[str] = field(default_factory=list)
    #: Rows the CSV parser could not split into the header's columns
    #: (line number when known, original text); quarantined as ``malformed_row``.
    malformed: list[tuple[int | None, str]] = field(default_factory=list)
    #: Per parsed row, the records (lines) it holds: 1, or more for a row whose values span lines.
    row_records: np.ndarray | None = None
    #: Per parsed row, whether a value holds a line break (None: none does): a malformed record.
    broken: np.ndarray | None = None
    #: Rows of the file before this table's first (a file read in batches gives one table per batch).
    row_offset: int = 0

    @property
    def num_rows(self) -> int:
        return self.table.num_rows

    @property
    def malformed_records(self) -> int:
        return sum(text_records(text) for _, text in self.malformed)

    @property
    def row_records_total(self) -> int:
        return self.num_rows if self.row_records is None else int(self.row_records.sum())


@dataclass
class BadFile:
    """A landed file that could not be parsed; quarantined whole."""

    key: str
    name: str
    reason: str
    size: int
    #: False when the name is unsafe to reuse as a storage key: the file is
    #: recorded but stays only in landing/ (which is never modified).
    copyable: bool = True
    #: Records the file holds when they can be counted without parsing it
    #: (CSV lines, a readable Parquet footer), else None; all of them are lost.
    records: int | None = None


#: Line breaks as the CSV reader and the record count (:class:`~pipelines.ingest.batches.Tap`) see them
#: (not ``str.splitlines``'s form feeds, ``\\x85`` or ``\\u2028``, which are ordinary characters in a CSV value).
LINE_BREAK = r"\r\n|\r|\n"


def text_records(text: str | bytes) -> int:
    """Records in a piece of delivered text: its non-empty lines (at least one)."""
    import re

    pattern = LINE_BREAK.encode() if isinstance(text, bytes) else LINE_BREAK
    return max(1, sum(1 for line in re.split(pattern, text) if line))


def _printable(text: str, limit: int = 200) -> str:
    # Parser messages can echo the bad bytes: keep reasons printable ASCII.
    return "".join(ch if ch.isprintable() and ord(ch) < 128 else "?" for ch in text)[:limit]


class GzipError(ValueError):
    """A gzip file that cannot be read to its end (what inflated before the fault was read and counted)."""


def _csv_header(data: bytes) -> list[str]:
    import csv
    import re

    header_line = re.match(rb"[^\r\n]*", data).group().decode("utf-8-sig")
    names = next(csv.reader([header_line]), [])
    if not names or len(set(names)) != len(names) or not all(names):
        raise ValueError("empty or duplicated column names in header")
    return names


def row_spans(table: pa.Table) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Which parsed CSV rows hold a line break in a value, and the records each row holds.

    Returns ``(None, None)`` when no value holds a line break (the common
    case, checked in Arrow without touching Python objects). Otherwise a mask
    of those rows (malformed: a stray quote swallowed the lines after it) and
    per row the non-empty lines of its text, which never counts more lines
    than the row took in the file (a line it took but holds no value of is
    then counted as lost, never hidden).
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    broken = None
    for col in table.columns:
        if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
            continue
        hit = pc.fill_null(pc.or_(pc.match_substring(col, "\n"), pc.match_substring(col, "\r")), False)
        broken = hit if broken is None else pc.or_(broken, hit)
    if broken is None:
        return None, None
    mask = np.asarray(broken.to_numpy(zero_copy_only=False), dtype=bool)
    rows = np.flatnonzero(mask)
    if not len(rows):
        return None, None
    spans = np.ones(table.num_rows, dtype=np.int64)
    sub = table.take(pa.array(rows, pa.int64())).to_pylist()
    for i, values in zip(rows, sub, strict=True):
        spans[i] = text_records(",".join("" if v is None else str(v) for v in values.values()))
    return mask, spans


def _header_or_none(raw: bytes) -> list[str]:
    try:
        return _csv_header(raw)
    except (ValueError, UnicodeDecodeError):
        return []


#: Integers beyond this lose precision in float64: flagged, not rounded.
MAX_SAFE_INTEGER = 2**53


def _null_series(n: int, logical_type: str) -> pd.Series:
    import numpy as np
    import pandas as pd

    if logical_type in ("integer", "number"):
        return pd.Series(np.full(n, np.nan), dtype="float64")
    if logical_type == "timestamp":
        return pd.Series(pd.NaT, index=range(n), dtype="datetime64[us, UTC]")
    if logical_type == "date":
        return pd.Series(pd.NaT, index=range(n), dtype="datetime64[us]")
    return pd.Series([None] * n, dtype=object)


def coerce_column(arr: pa.ChunkedArray, logical_type: str, timezone: str = "UTC") -> tuple[pd.Series, np.ndarray]:
    """Cast a delivered column to its contract type.

    Values that are present but cannot be read as the type are nulled in the
    typed column and flagged (the ``type_mismatch`` rule quarantines their
    rows, which keep their original text). A column whose delivered type
    cannot be read at all (a list, a struct, binary that is not UTF-8) flags
    every present value.

    A timestamp with an offset (``2013-01-01T05:17:00-05:00``, ``...Z``, a
    Parquet timestamp with a time zone) keeps its instant. One without (ISO
    text such as ``2013-01-01 05:17:00``, a Parquet timestamp without a time
    zone) is a local time in ``timezone``; a local time that does not exist
    there or exists twice (the hour a DST change skips or repeats) names no
    instant and is flagged. A date is an ISO date (``2013-01-01``), a Parquet
    date, or a timestamp at midnight (``2013-01-01 00:00:00``, a Parquet
    timestamp at midnight in its own zone); another time of day, or an
    offset in text, is flagged (it would be lost in the published date).

    Args:
        arr: the delivered column.
        logical_type: the contract column's type.
        timezone: the IANA zone of a timestamp column's values without an
            offset (the column's :attr:`~pipelines.core.contracts.Column.timezone`).

    Returns:
        The typed pandas Series (numbers as float64, integers too so nulls
        survive; strings as object; timestamps as UTC datetimes, dates as
        naive midnights, both in microseconds) and a boolean mask of values
        that were present but could not be read as the type.
    """
    import numpy as np
    import pyarrow as pa

    try:
        return _coerce(arr, logical_type, timezone)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, TypeError, ValueError):
        present = arr.is_valid().to_numpy(zero_copy_only=False)
        return _null_series(len(arr), logical_type), np.asarray(present, dtype=bool)


def _coerce(arr: pa.ChunkedArray, logical_type: str, timezone: str) -> tuple[pd.Series, np.ndarray]:
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    n = len(arr)
    no_fail = np.zeros(n, dtype=bool)
    typ = arr.type
    if logical_type in ("integer", "number"):
        if pa.types.is_integer(typ) or pa.types.is_floating(typ):
            series = arr.cast(pa.float64(), safe=False).to_pandas()
            fails = no_fail
        else:
            as_str = arr if pa.types.is_string(typ) or pa.types.is_large_string(typ) else arr.cast(pa.string())
            try:
                series = pc.cast(as_str, pa.float64()).to_pandas()
                fails = no_fail
            except pa.ArrowInvalid:
                raw = as_str.to_pandas()
                series = pd.to_numeric(raw.str.strip(), errors="coerce").astype("float64")
                fails = (raw.notna() & series.isna()).to_numpy()
        values = series.to_numpy(dtype="float64", na_value=np.nan)
        present = np.asarray(arr.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
        # Text such as "NAN" or "-nan" is not a missing value the contract
        # knows (those are the null tokens), and inf is no number it means.
        bad = present & ~np.isfinite(values)
        if logical_type == "integer":
            finite = np.isfinite(values)
            bad |= finite & (values != np.floor(np.where(finite, values, 0)))
            # 2**53 + 1 reads as 2**53: from 2**53 on, a float no longer tells which integer was delivered.
            bad |= finite & (np.abs(np.where(finite, values, 0)) >= MAX_SAFE_INTEGER)
        if bad.any():
            fails = fails | bad
            series = series.mask(bad)
        return series, fails
    if logical_type == "string":
        if not (pa.types.is_string(typ) or pa.types.is_large_string(typ)):
            arr = arr.cast(pa.string())
        return arr.to_pandas().astype(object), no_fail
    if logical_type == "timestamp":
        return _coerce_timestamp(arr, timezone)
    if logical_type == "date":
        return _coerce_date(arr)
    if logical_type == "boolean":
        raw = arr.cast(pa.string()).to_pandas().str.lower()
        mapping = {"true": True, "false": False, "1": True, "0": False}
        series = raw.map(mapping)
        return series.astype(object), (raw.notna() & series.isna()).to_numpy()
    raise ConfigError(f"unsupported logical type {logical_type!r}")


def _as_text(arr: pa.ChunkedArray) -> pa.ChunkedArray:
    import pyarrow as pa

    return arr if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type) else arr.cast(pa.string())


def _coerce_timestamp(arr: pa.ChunkedArray, timezone: str) -> tuple[pd.Series, np.ndarray]:
    """A timestamp column as UTC instants (see :func:`coerce_column`); values without an offset are in ``timezone``."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    no_fail = np.zeros(len(arr), dtype=bool)
    if pa.types.is_timestamp(arr.type):
        series = arr.to_pandas()
        if series.dt.tz is not None:
            return series.dt.tz_convert("UTC").dt.as_unit("us"), no_fail
        series = _localize(series, timezone)
        present = np.asarray(arr.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
        return series, present & series.isna().to_numpy()
    as_str = _as_text(arr)
    try:  # every value has an offset
        return pc.cast(as_str, pa.timestamp("us", tz="UTC")).to_pandas(), no_fail
    except pa.ArrowInvalid:
        pass
    try:  # no value has one (raises on a local time a DST change skips or repeats)
        local = pc.assume_timezone(pc.cast(as_str, pa.timestamp("us")), timezone)
        return local.cast(pa.timestamp("us", tz="UTC")).to_pandas(), no_fail
    except pa.ArrowInvalid:
        pass
    raw = as_str.to_pandas()
    series = _parse_timestamps(raw, timezone)
    return series, (raw.notna() & series.isna()).to_numpy()


def _localize(local: pd.Series, timezone: str) -> pd.Series:
    """Naive local times in ``timezone`` as UTC instants (microseconds); one a DST change skips or repeats is NaT."""
    from zoneinfo import ZoneInfo

    if timezone == "UTC":
        return local.dt.tz_localize("UTC").dt.as_unit("us")
    zone = ZoneInfo(timezone)
    return local.dt.tz_localize(zone, ambiguous="NaT", nonexistent="NaT").dt.tz_convert("UTC").dt.as_unit("us")


#: ISO 8601 text that ends with a time and an offset (``T05:17:00-05:00``, ``05:17Z``); a date alone has none.
OFFSET_AT_END = r"[T ]\d\d(?::?\d\d){0,2}(?:[.,]\d+)?\s*(?:[Zz]|[+-]\d\d(?::?\d\d)?)$"


def _parse_timestamps(raw: pd.Series, timezone: str = "UTC") -> pd.Series:
    """ISO 8601 text to UTC: values with an offset by their offset, values without one as local times in ``timezone``.

    Parsed in two groups: pandas reads a naive value that follows one with an
    offset as if it carried that offset. Text that is no timestamp is NaT.
    """
    import pandas as pd

    with_offset = raw.str.contains(OFFSET_AT_END, regex=True, na=False)
    out = pd.Series(pd.NaT, index=raw.index, dtype="datetime64[ns, UTC]")
    if with_offset.any():
        out[with_offset] = pd.to_datetime(raw[with_offset], errors="coerce", utc=True, format="ISO8601")
    local = ~with_offset & raw.notna()
    if local.any():
        # Read as UTC wall times, then placed in the zone: any offset the split missed cannot make mixed types.
        wall = pd.to_datetime(raw[local], errors="coerce", utc=True, format="ISO8601").dt.tz_localize(None)
        out[local] = _localize(wall, timezone)
    return out.dt.as_unit("us")


#: A date as text: an ISO calendar date, maybe with a midnight time (``2013-01-01``, ``2013-01-01 00:00:00``).
ISO_DATE = r"(\d{4}-\d{2}-\d{2})(?:[T ]00:00(?::00(?:\.0+)?)?)?"


def _coerce_date(arr: pa.ChunkedArray) -> tuple[pd.Series, np.ndarray]:
    """A date column as naive midnights in microseconds (see :func:`coerce_column`)."""
    import datetime as dt
    import re

    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    no_fail = np.zeros(len(arr), dtype=bool)
    typ = arr.type
    if pa.types.is_date(typ):
        return arr.cast(pa.date32()).cast(pa.timestamp("us")).to_pandas(), no_fail
    if pa.types.is_timestamp(typ):
        wall = arr.to_pandas()
        if wall.dt.tz is not None:  # the wall time in the value's own zone: a zoned midnight is that zone's date
            wall = wall.dt.tz_localize(None)
        day = wall.dt.floor("D")
        bad = (wall.notna() & (wall != day)).to_numpy()
        return day.mask(bad).dt.as_unit("us"), bad
    as_str = _as_text(arr)
    try:  # every value is an ISO date
        return pc.cast(as_str, pa.date32()).cast(pa.timestamp("us")).to_pandas(), no_fail
    except pa.ArrowInvalid:
        pass
    pattern = re.compile(ISO_DATE)

    def parse(text: str) -> dt.date | None:
        m = pattern.fullmatch(text)
        try:
            return dt.date.fromisoformat(m.group(1)) if m else None
        except ValueError:  # 2013-02-30
            return None

    raw = as_str.to_pandas()
    present = raw.notna().to_numpy()
    dates = {text: parse(text) for text in raw[present].unique()}  # a day's delivery holds few distinct dates
    values = [dates[text] if ok else None for text, ok in zip(raw.tolist(), present, strict=True)]
    series = pa.array(values, pa.date32()).cast(pa.timestamp("us")).to_pandas()
    return series, present & series.isna().to_numpy()


def output_schema(contract: Contract) -> pa.Schema:
    """Arrow schema of validated rows: the contract's types, nullable where allowed."""
    import pyarrow as pa

    types = {
        "integer": pa.int64(),
        "number": pa.float64(),
        "string": pa.string(),
        "timestamp": pa.timestamp("us", tz="UTC"),
        "date": pa.date32(),
        "boolean": pa.bool_(),
    }
    return pa.schema([pa.field(c.name, types[c.logical_type], nullable=not c.required) for c in contract.columns])


@dataclass
class Parsed:
    """Every readable landed file, coerced to the contract's types and stacked, with where each row came from."""

    frame: pd.DataFrame
    raw_tables: list[pa.Table]
    offsets: list[int]
    source_file: np.ndarray
    source_row: np.ndarray
    type_fail_cols: dict[str, np.ndarray]
    missing_mask: np.ndarray
    missing_cols_by_file: dict[str, list[str]]
    malformed: list[tuple[str, int | None, str]]
    extra_cols_by_file: dict[str, list[str]]
    #: Per parsed row, the records it holds (1, or the lines of a row whose values span lines).
    row_records: np.ndarray
    #: Parsed rows whose values span several lines: malformed records, never published.
    multiline_mask: np.ndarray


def combine(parsed: list[ParsedFile], contract: Contract) -> Parsed:
    """Coerce each parsed file and stack them into one typed frame."""
    import numpy as np
    import pandas as pd

    frames, raw_tables, offsets = [], [], []
    src_file, src_row = [], []
    type_fail: dict[str, list[np.ndarray]] = {c: [] for c in contract.column_names}
    missing: list[np.ndarray] = []
    missing_by_file: dict[str, list[str]] = {}
    extra_by_file: dict[str, list[str]] = {}
    malformed: list[tuple[str, int | None, str]] = []
    spans: list[np.ndarray] = []
    broken: list[np.ndarray] = []
    offset = 0
    for pf in parsed:
        malformed.extend((pf.name, line, text) for line, text in pf.malformed)
        spans.append(np.ones(pf.num_rows, dtype=np.int64) if pf.row_records is None else pf.row_records)
        broken.append(np.zeros(pf.num_rows, dtype=bool) if pf.broken is None else pf.broken)
        if pf.extra_columns:
            extra_by_file[pf.name] = pf.extra_columns
        n = pf.num_rows
        cols = {}
        for col in contract.columns:
            if col.name in pf.table.column_names:
                series, fails = coerce_column(pf.table.column(col.name), col.logical_type, col.timezone)
                cols[col.name] = series.reset_index(drop=True)
                type_fail[col.name].append(fails)
            else:
                cols[col.name] = _null_series(n, col.logical_type)
                type_fail[col.name].append(np.zeros(n, dtype=bool))
        frames.append(pd.DataFrame(cols))
        raw_tables.append(pf.table)
        offsets.append(offset)
        offset += n
        src_file.append(np.full(n, pf.name, dtype=object))
        src_row.append(np.arange(pf.row_offset + 1, pf.row_offset + n + 1, dtype=np.int64))
        missing.append(np.full(n, bool(pf.missing_columns)))
        if pf.missing_columns:
            missing_by_file[pf.name] = pf.missing_columns
    if frames:
        frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    else:
        frame = pd.DataFrame({c.name: _null_series(0, c.logical_type) for c in contract.columns})

    def cat(parts: list[np.ndarray], dtype: Any) -> np.ndarray:
        return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)

    row_records = cat(spans, np.int64)

    return Parsed(
        frame=frame,
        raw_tables=raw_tables,
        offsets=offsets,
        source_file=cat(src_file, object),
        source_row=cat(src_row, np.int64),
        type_fail_cols={c: cat(v, bool) for c, v in type_fail.items()},
        missing_mask=cat(missing, bool),
        missing_cols_by_file=missing_by_file,
        malformed=malformed,
        extra_cols_by_file=extra_by_file,
        row_records=row_records,
        multiline_mask=cat(broken, bool),
    )
