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
from typing import TYPE_CHECKING

from pipelines.contracts import Contract
from pipelines.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    from pipelines.storage import Storage

log = logging.getLogger(__name__)

NULL_TOKENS = ["", "NA", "N/A", "NULL", "null", "NaN", "nan", "None"]
SUPPORTED_SUFFIXES = (".csv", ".csv.gz", ".parquet")


@dataclass
class ParsedFile:
    """A landed file read into an Arrow table, as delivered."""

    key: str
    name: str
    table: pa.Table
    missing_columns: list[str] = field(default_factory=list)
    extra_columns: list[str] = field(default_factory=list)

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


def _csv_read(data: bytes, name: str) -> pa.Table:
    import csv
    import gzip

    import pyarrow as pa
    import pyarrow.csv as pacsv

    if name.endswith(".gz"):
        data = gzip.decompress(data)
    if not data.strip():
        raise ValueError("empty file")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 (invalid byte at offset {exc.start})") from None
    # Every column is read as a string (the header names them), so a
    # quarantined row keeps its original text and nothing is type-guessed.
    header_line = data.split(b"\n", 1)[0].rstrip(b"\r").decode("utf-8")
    names = next(csv.reader([header_line]))
    if len(set(names)) != len(names) or not all(names):
        raise ValueError("empty or duplicated column names in header")
    return pacsv.read_csv(
        pa.BufferReader(data),
        read_options=pacsv.ReadOptions(use_threads=True, block_size=1 << 22),
        convert_options=pacsv.ConvertOptions(
            column_types={n: pa.string() for n in names},
            null_values=NULL_TOKENS,
            strings_can_be_null=True,
            quoted_strings_can_be_null=True,
            check_utf8=True,
        ),
    )


def read_landed_file(storage: Storage, key: str, contract: Contract) -> ParsedFile | BadFile:
    """Read one landed file; a parse failure becomes a :class:`BadFile`."""
    import csv

    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipelines.storage import check_key

    name = key.rsplit("/", 1)[-1]
    try:
        check_key(key)
    except ConfigError:
        safe = "".join(ch if ch.isprintable() and ord(ch) < 128 else "?" for ch in name)[:100]
        return BadFile(
            key, safe, "unsafe file name (allowed: letters, digits, . _ = -); left in landing", -1, copyable=False
        )
    data = storage.read_bytes(key)
    lower = name.lower()
    try:
        if lower.endswith((".csv", ".csv.gz")):
            table = _csv_read(data, lower)
        elif lower.endswith(".parquet"):
            if not data:
                raise ValueError("empty file")
            table = pq.read_table(pa.BufferReader(data))
        else:
            return BadFile(key, name, f"unsupported file type (expected one of {SUPPORTED_SUFFIXES})", len(data))
    except (pa.ArrowException, ValueError, OSError, EOFError, csv.Error) as exc:
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        # Keep the reason printable: parser messages can echo the bad bytes.
        reason = "".join(ch if ch.isprintable() and ord(ch) < 128 else "?" for ch in text)[:200]
        return BadFile(key, name, f"unreadable: {reason}", len(data))
    names = table.column_names
    expected = contract.column_names
    return ParsedFile(
        key=key,
        name=name,
        table=table,
        missing_columns=[c for c in expected if c not in names],
        extra_columns=[c for c in names if c not in expected],
    )


def coerce_column(arr: pa.ChunkedArray, logical_type: str) -> tuple[pd.Series, np.ndarray]:
    """Cast a delivered column to its contract type.

    Returns:
        The typed pandas Series (numbers as float64, integers too so nulls
        survive; strings as object; timestamps as UTC datetimes) and a boolean
        mask of values that were present but could not be read as the type.
    """
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    n = len(arr)
    no_fail = np.zeros(n, dtype=bool)
    typ = arr.type
    if logical_type in ("integer", "number"):
        if pa.types.is_integer(typ) or pa.types.is_floating(typ):
            series = arr.cast(pa.float64()).to_pandas()
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
        if logical_type == "integer":
            frac = series.notna() & (series != np.floor(series))
            if frac.any():
                fails = fails | frac.to_numpy()
                series = series.mask(frac)
        # inf is not a number any contract means
        inf = np.isinf(series.to_numpy(dtype="float64", na_value=np.nan))
        if inf.any():
            fails = fails | inf
            series = series.mask(inf)
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
