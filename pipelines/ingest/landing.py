"""Reading landed files as delivered, and coercing them to contract types.

Files are read with pyarrow. CSV columns are read as strings first, so a
quarantined row keeps its original text; each column is then cast to its
contract type (fast path: one Arrow cast) and, only if that fails, coerced
value by value so that just the bad values are flagged. A file that cannot be
parsed at all (not UTF-8, malformed, truncated Parquet, empty) is reported as
a bad file, never raised.
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

    from pipelines.core.storage import Storage

log = logging.getLogger(__name__)

NULL_TOKENS = ["", "NA", "N/A", "NULL", "null", "NaN", "nan", "None"]
SUPPORTED_SUFFIXES = (".csv", ".csv.gz", ".parquet")


#: Decompressed size above which a ``.csv.gz`` is refused (gzip bombs).
MAX_DECOMPRESSED_BYTES = 4 << 30


@dataclass
class ParsedFile:
    """A landed file read into an Arrow table, as delivered."""

    key: str
    name: str
    table: pa.Table
    missing_columns: list[str] = field(default_factory=list)
    extra_columns: list[str] = field(default_factory=list)
    #: Rows the CSV parser could not split into the header's columns
    #: (line number when known, original text); quarantined as ``malformed_row``.
    malformed: list[tuple[int | None, str]] = field(default_factory=list)
    size: int = 0

    @property
    def num_rows(self) -> int:
        return self.table.num_rows


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


def _printable(text: str, limit: int = 200) -> str:
    # Parser messages can echo the bad bytes: keep reasons printable ASCII.
    return "".join(ch if ch.isprintable() and ord(ch) < 128 else "?" for ch in text)[:limit]


def _gunzip(data: bytes) -> bytes:
    import zlib

    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = inflater.decompress(data, MAX_DECOMPRESSED_BYTES)
    if inflater.unconsumed_tail:
        raise ValueError(f"decompresses to more than {MAX_DECOMPRESSED_BYTES >> 30} GiB")
    if not inflater.eof:
        raise ValueError("gzip stream cut short")
    return out


def _csv_read(data: bytes, name: str) -> tuple[pa.Table, list[tuple[int | None, str]]]:
    import csv

    import pyarrow as pa
    import pyarrow.csv as pacsv

    if name.endswith(".gz"):
        data = _gunzip(data)
    if not data.strip():
        raise ValueError("empty file")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 (invalid byte at offset {exc.start})") from None
    # Every column is read as a string (the header names them), so a
    # quarantined row keeps its original text and nothing is type-guessed.
    header_line = data.split(b"\n", 1)[0].rstrip(b"\r").decode("utf-8-sig")
    names = next(csv.reader([header_line]))
    if len(set(names)) != len(names) or not all(names):
        raise ValueError("empty or duplicated column names in header")
    malformed: list[tuple[int | None, str]] = []

    def on_invalid_row(row) -> str:
        # A row with the wrong number of fields: keep its text, skip it here,
        # quarantine it later. Never lose it, never fail the whole file.
        malformed.append((row.number, row.text))
        return "skip"

    table = pacsv.read_csv(
        pa.BufferReader(data),
        read_options=pacsv.ReadOptions(use_threads=True, block_size=1 << 22),
        parse_options=pacsv.ParseOptions(newlines_in_values=True, invalid_row_handler=on_invalid_row),
        convert_options=pacsv.ConvertOptions(
            column_types={n: pa.string() for n in names},
            null_values=NULL_TOKENS,
            strings_can_be_null=True,
            quoted_strings_can_be_null=True,
            check_utf8=True,
        ),
    )
    # pyarrow keeps a UTF-8 BOM out of the names it reads; align with ours.
    if table.column_names != names:
        table = table.rename_columns(names)
    return table, malformed


def read_landed_file(storage: Storage, key: str, contract: Contract, name: str) -> ParsedFile | BadFile:
    """Read one landed file; a parse failure becomes a :class:`BadFile`.

    Args:
        storage: where the file is.
        key: its storage key.
        contract: the contract (for the expected columns).
        name: how reports name it (default: the key's last segment).
    """
    import csv
    import zlib

    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipelines.core.storage import check_key

    try:
        check_key(key)
    except ConfigError:
        return BadFile(
            key, _printable(name, 100), "unsafe file name (allowed: letters, digits, . _ = -)", -1, copyable=False
        )
    try:
        data = storage.read_bytes(key)
    except ConfigError as exc:  # e.g. a symlink out of the root
        return BadFile(key, name, _printable(str(exc)), -1, copyable=False)
    lower = name.lower()
    malformed: list[tuple[int | None, str]] = []
    try:
        if lower.endswith((".csv", ".csv.gz")):
            table, malformed = _csv_read(data, lower)
        elif lower.endswith(".parquet"):
            if not data:
                raise ValueError("empty file")
            table = pq.read_table(pa.BufferReader(data))
        else:
            return BadFile(key, name, f"unsupported file type (expected one of {SUPPORTED_SUFFIXES})", len(data))
    except (pa.ArrowException, ValueError, OSError, EOFError, csv.Error, zlib.error) as exc:
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return BadFile(key, name, f"unreadable: {_printable(text)}", len(data))
    names = table.column_names
    expected = contract.column_names
    return ParsedFile(
        key=key,
        name=name,
        table=table,
        missing_columns=[c for c in expected if c not in names],
        extra_columns=[c for c in names if c not in expected],
        malformed=malformed,
        size=len(data),
    )


#: Integers beyond this lose precision in float64: flagged, not rounded.
MAX_SAFE_INTEGER = 2**53


def _null_series(n: int, logical_type: str) -> pd.Series:
    import numpy as np
    import pandas as pd

    if logical_type in ("integer", "number"):
        return pd.Series(np.full(n, np.nan), dtype="float64")
    if logical_type in ("timestamp", "date"):
        return pd.Series(pd.NaT, index=range(n), dtype="datetime64[us, UTC]")
    return pd.Series([None] * n, dtype=object)


def coerce_column(arr: pa.ChunkedArray, logical_type: str) -> tuple[pd.Series, np.ndarray]:
    """Cast a delivered column to its contract type.

    Values that are present but cannot be read as the type are nulled in the
    typed column and flagged (the ``type_mismatch`` rule quarantines their
    rows, which keep their original text). Timestamps without an offset are
    read as UTC. A column whose delivered type cannot be read at all (a list,
    a struct, binary that is not UTF-8) flags every present value.

    Returns:
        The typed pandas Series (numbers as float64, integers too so nulls
        survive; strings as object; timestamps as UTC datetimes) and a boolean
        mask of values that were present but could not be read as the type.
    """
    import numpy as np
    import pyarrow as pa

    try:
        return _coerce(arr, logical_type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, TypeError, ValueError):
        present = arr.is_valid().to_numpy(zero_copy_only=False)
        return _null_series(len(arr), logical_type), np.asarray(present, dtype=bool)


def _coerce(arr: pa.ChunkedArray, logical_type: str) -> tuple[pd.Series, np.ndarray]:
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
            bad |= finite & (np.abs(np.where(finite, values, 0)) > MAX_SAFE_INTEGER)
        if bad.any():
            fails = fails | bad
            series = series.mask(bad)
        return series, fails
    if logical_type == "string":
        if not (pa.types.is_string(typ) or pa.types.is_large_string(typ)):
            arr = arr.cast(pa.string())
        return arr.to_pandas().astype(object), no_fail
    if logical_type in ("timestamp", "date"):
        if pa.types.is_timestamp(typ):
            series = arr.to_pandas()
            series = series.dt.tz_localize("UTC") if series.dt.tz is None else series.dt.tz_convert("UTC")
            return series, no_fail
        as_str = arr.cast(pa.string()) if not pa.types.is_string(typ) else arr
        try:
            series = pc.cast(as_str, pa.timestamp("us", tz="UTC")).to_pandas()
            return series, no_fail
        except pa.ArrowInvalid:
            raw = as_str.to_pandas()
            series = pd.to_datetime(raw, errors="coerce", utc=True, format="ISO8601")
            return series, (raw.notna() & series.isna()).to_numpy()
    if logical_type == "boolean":
        raw = arr.cast(pa.string()).to_pandas().str.lower()
        mapping = {"true": True, "false": False, "1": True, "0": False}
        series = raw.map(mapping)
        return series.astype(object), (raw.notna() & series.isna()).to_numpy()
    raise ConfigError(f"unsupported logical type {logical_type!r}")


def output_schema(contract: Contract) -> pa.Schema:
    """Arrow schema of validated rows: the contract's types, nullable where allowed."""
    import pyarrow as pa

    types = {
        "integer": pa.int64(),
        "number": pa.float64(),
        "string": pa.string(),
        "timestamp": pa.timestamp("us", tz="UTC"),
        "date": pa.timestamp("us", tz="UTC"),
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
    offset = 0
    for pf in parsed:
        malformed.extend((pf.name, line, text) for line, text in pf.malformed)
        if pf.extra_columns:
            extra_by_file[pf.name] = pf.extra_columns
        n = pf.num_rows
        cols = {}
        for col in contract.columns:
            if col.name in pf.table.column_names:
                series, fails = coerce_column(pf.table.column(col.name), col.logical_type)
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
        src_row.append(np.arange(1, n + 1, dtype=np.int64))
        missing.append(np.full(n, bool(pf.missing_columns)))
        if pf.missing_columns:
            missing_by_file[pf.name] = pf.missing_columns
    if frames:
        frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    else:
        frame = pd.DataFrame({c: pd.Series([], dtype="float64") for c in contract.column_names})

    def cat(parts: list[np.ndarray], dtype: Any) -> np.ndarray:
        return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)

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
    )
