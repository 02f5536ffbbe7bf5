"""Property-based tests of the ingest validation step: any delivery ends accounted for.

Hypothesis generates deliveries of 1 to 4 files (CSV, gzipped CSV, Parquet) of
0 to 40 rows, breaks them the ways upstreams do (stray quotes, truncation,
empty files, latin-1 text, type changes, missing and extra columns, duplicated
keys, nested and binary Parquet columns, blank lines, ``\\r\\n`` and ``\\r``
line endings, a BOM, quoted line breaks, rows with too many or too few fields,
columns named like the quarantine's), lands them as upstream does (data files,
then the ``_SUCCESS`` marker) and validates them against a small contract
(:func:`contract_yaml`) whose severities are generated too. For every delivery:

1. the step publishes (a summary, exit 0), halts (:class:`ContractHalt`, exit 3)
   or waits (:class:`NothingLanded` / :class:`DeliveryChanged`, exit 5): never
   any other exception;
2. ``landed_records`` is at least the records the generator wrote in every
   file whose records can be counted (CSV lines after the header, counted here
   on the final bytes; rows of an intact Parquet file), and equal to it when
   every file is countable;
3. published: the outputs in storage hold what the summary says, every record
   is a validated row, inside a quarantined row, or lost
   (``validated + quarantined_records + lost == landed_records``), every
   quarantined row names a rule, every unreadable file is kept byte for byte,
   and every validated row is one the generator wrote (a row that swallowed
   other lines, or a value the parser invented, is never published);
4. halted: nothing is left in ``validated/`` or ``quarantine/`` and the report says so;
5. validating the same delivery again gives the same counts.

A file written after the marker makes the step wait (exit 5) and write nothing.

The contract's knobs (:class:`Knobs`: quarantine rate, which rules halt, row
count bounds, a one-column or compound key, ``expectedSources`` or not) are
generated with the delivery. ``FOUND`` keeps the minimal deliveries failures
were shrunk to, checked by the same oracle in a plain test (regressions once
fixed). ``pytest --hypothesis-show-statistics`` shows which faults and outcomes
the generator reached. Profiles (``HYPOTHESIS_PROFILE``): see ``conftest.py``.
"""

from __future__ import annotations

import datetime as dt
import gzip
import io
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import currently_in_test_context, event, given, settings
from hypothesis import note as hypothesis_note
from hypothesis import strategies as st

from pipelines.core import catalog
from pipelines.core.contracts import Contract, load_contract
from pipelines.core.errors import ContractHalt, DeliveryChanged, MissingInput, NothingLanded
from pipelines.ingest.landing import NULL_TOKENS as LANDING_NULL_TOKENS
from pipelines.ingest.validation import validate_partition

DATASET = "flights"  # the flights_delay project's dataset: only the contract argument matters here
DS = "2024-03-05"
DAY = (2024, 3, 5)
MARKER = "_SUCCESS"
COLUMNS = ("id", "year", "month", "day", "amount", "kind", "ts", "flag", "note")
NULL_TOKENS = frozenset(LANDING_NULL_TOKENS)  # as the landing reader reads them
SUMMARY_COUNTS = (
    "status",
    "landed_files",
    "landed_rows",
    "landed_records",
    "validated_rows",
    "quarantined_rows",
    "quarantined_records",
    "lost_records",
    "rules_failed",
    "rules_halted",
    "rule_counts",
    "quarantined_files",
    "empty_files",
)


def examples(share: float) -> settings:
    """The loaded profile (``conftest.py``), with ``share`` times its ``max_examples``."""
    base = settings()
    return settings(base, max_examples=max(1, round(base.max_examples * share)))


def note(text: str) -> None:
    """Shown with a failing example (Hypothesis), or printed (pytest shows it) in the plain tests."""
    if currently_in_test_context():
        hypothesis_note(text)
    else:
        print(text)


def count(label: str) -> None:
    """A Hypothesis event (``--hypothesis-show-statistics``), in a property only."""
    if currently_in_test_context():
        event(label)


# ---- the contract


@dataclass(frozen=True)
class Knobs:
    """What varies between generated contracts: the severities of the parse-stage and delivery rules."""

    max_rate: float = 1.0
    empty: str = "warning"
    malformed: str = "error"
    type_mismatch: str = "error"
    missing: str = "error"
    required: str = "error"
    date: str = "error"
    row_count: tuple[int, int] = (0, 100_000)
    row_count_severity: str = "critical"
    sources: bool = False
    incomplete: str = "critical"
    #: Columns of the uniqueness rule (a natural key of one column is as legitimate as a compound one).
    key: tuple[str, ...] = ("year", "month", "day", "id")


def contract_yaml(k: Knobs) -> str:
    """A small ODCS v3 contract: a compound key, a partition date, a range, an allowed set, every type."""
    sources = (
        "  - property: expectedSources\n"
        '    value: {file: "part_(?P<source>[a-z])\\\\.(csv|csv\\\\.gz|parquet)", sources: [a, b], minShare: 0.2}\n'
        f"  - property: incompleteDeliverySeverity\n    value: {k.incomplete}\n"
        if k.sources
        else ""
    )
    return f"""\
apiVersion: v3.1.0
kind: DataContract
id: property-deliveries
name: deliveries
version: 1.0.0
status: active
customProperties:
  - property: severityActions
    value: {{critical: halt, error: quarantine, warning: warn}}
  - property: maxQuarantineRate
    value: {k.max_rate}
  - property: typeMismatchSeverity
    value: {k.type_mismatch}
  - property: missingColumnSeverity
    value: {k.missing}
  - property: requiredSeverity
    value: {k.required}
  - property: malformedRowSeverity
    value: {k.malformed}
  - property: emptyFileSeverity
    value: {k.empty}
{sources}schema:
  - name: deliveries
    quality:
      - {{id: rows_between, metric: rowCount, mustBeBetween: [{k.row_count[0]}, {k.row_count[1]}], \
severity: {k.row_count_severity}}}
      - {{id: key_unique, metric: duplicateValues, arguments: {{properties: [{", ".join(k.key)}]}}, mustBe: 0, \
severity: error}}
      - {{id: date_matches, type: custom, engine: pipelines, implementation: partitionDateMatches, \
arguments: {{year: year, month: month, day: day}}, severity: {k.date}}}
    properties:
      - {{name: id, logicalType: integer, required: true, primaryKey: true}}
      - {{name: year, logicalType: integer, required: true}}
      - {{name: month, logicalType: integer, required: true}}
      - {{name: day, logicalType: integer, required: true}}
      - name: amount
        logicalType: number
        quality:
          - {{id: amount_range, metric: invalidValues, arguments: {{minimum: -1000, maximum: 1000}}, mustBe: 0, \
severity: error}}
      - name: kind
        logicalType: string
        quality:
          - {{id: kind_known, metric: invalidValues, arguments: {{validValues: [a, b, c]}}, mustBe: 0, severity: error}}
      - {{name: ts, logicalType: timestamp}}
      - {{name: flag, logicalType: boolean}}
      - {{name: note, logicalType: string}}
"""


def knobs(*, sources: bool) -> st.SearchStrategy[Knobs]:
    # The first value of each is the lenient one (what shrinking goes to): most deliveries publish.
    return st.builds(
        Knobs,
        max_rate=st.sampled_from([1.0, 1.0, 1.0, 0.5, 0.05, 0.0]),
        empty=st.sampled_from(["warning", "warning", "warning", "critical"]),
        malformed=st.sampled_from(["error", "error", "error", "critical"]),
        type_mismatch=st.sampled_from(["error", "error", "error", "critical"]),
        missing=st.sampled_from(["error", "error", "error", "critical"]),
        required=st.sampled_from(["error", "error", "error", "critical"]),
        date=st.sampled_from(["error", "error", "error", "critical"]),
        row_count=st.sampled_from([(0, 100_000), (0, 100_000), (1, 60), (5, 100_000)]),
        row_count_severity=st.sampled_from(["critical", "warning"]),
        sources=st.just(sources),
        incomplete=st.sampled_from(["warning", "warning", "critical"]),
        key=st.sampled_from([("year", "month", "day", "id")] * 7 + [("id",)]),
    )


@pytest.fixture(scope="module")
def contracts(tmp_path_factory):
    """Compile (once) the contract of some knobs, from a YAML file as an operator would write it."""
    folder = tmp_path_factory.mktemp("contracts")
    cache: dict[Knobs, tuple[Contract, str]] = {}

    def get(k: Knobs) -> tuple[Contract, str]:
        if k not in cache:
            text = contract_yaml(k)
            path = folder / f"c{len(cache)}.odcs.yaml"
            path.write_text(text, encoding="utf-8")
            cache[k] = (load_contract(path), text)
        return cache[k]

    return get


# ---- rows

UTC = dt.UTC
OFFSETS = [None, UTC, dt.timezone(dt.timedelta(hours=2)), dt.timezone(dt.timedelta(hours=-5, minutes=-30))]
WRONG_DATES = [(2024, 3, 6), (2023, 3, 5), (2024, 2, 5)]
NOTE_CHARS = st.one_of(
    st.sampled_from([*'ab ,"\n\r\t\x0b\x0c\x1c\x85\u2028é€\ufeff']),
    st.characters(codec="utf-8"),
)


def sometimes(draw, one_in: int) -> bool:
    """True about once in ``one_in`` draws (shrinks to False: to the delivery without the fault)."""
    return draw(st.sampled_from([False] * (one_in - 1) + [True]))


@dataclass(frozen=True)
class Row:
    id: int
    date: tuple[int, int, int]
    amount: float | int | None
    kind: str | None
    ts: dt.datetime | None
    flag: bool | None
    flag_text: str
    note: str | None
    #: How a CSV export spells the timestamp: iso (``T``), space, zulu (``Z`` for UTC), compact (``+0200``), date.
    ts_style: str = "iso"

    def ts_text(self) -> str:
        assert self.ts is not None
        text = self.ts.isoformat(sep=" " if self.ts_style == "space" else "T")
        if self.ts_style == "zulu" and text.endswith("+00:00"):
            return text[: -len("+00:00")] + "Z"
        if self.ts_style == "compact" and self.ts.tzinfo is not None:
            return text[:-3] + text[-2:]
        if self.ts_style == "date" and self.ts.tzinfo is None and self.ts.time() == dt.time(0):
            return self.ts.date().isoformat()
        return text

    def cells(self) -> dict[str, str]:
        """How a CSV export spells each value (None is an empty field)."""
        return {
            "id": str(self.id),
            "year": str(self.date[0]),
            "month": str(self.date[1]),
            "day": str(self.date[2]),
            "amount": "" if self.amount is None else repr(self.amount),
            "kind": self.kind or "",
            "ts": "" if self.ts is None else self.ts_text(),
            "flag": "" if self.flag is None else self.flag_text,
            "note": self.note or "",
        }

    def typed(self, *, csv: bool) -> tuple[Any, ...]:
        """The row as validated/ must hold it (a CSV's null tokens are nulls; naive timestamps are UTC)."""
        ts = None if self.ts is None else (self.ts if self.ts.tzinfo else self.ts.replace(tzinfo=UTC))
        kind, note_ = self.kind, self.note
        if csv:
            kind, note_ = (None if v is None or v in NULL_TOKENS else v for v in (kind, note_))
        amount = None if self.amount is None else float(self.amount)
        return (self.id, *self.date, amount, kind, ts, self.flag, note_)


def typed_of_validated(row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(row[c] for c in COLUMNS)


FLAG_TEXT = {True: ["true", "True", "1", "TRUE"], False: ["false", "False", "0", "FALSE"]}


@st.composite
def rows(draw) -> Row:
    flag = draw(st.sampled_from([True, False, None]))
    ts = draw(
        st.one_of(
            st.none(),
            st.datetimes(dt.datetime(1990, 1, 1), dt.datetime(2090, 1, 1), timezones=st.sampled_from(OFFSETS)),
        )
    )
    ts_style = draw(st.sampled_from(["iso"] * 4 + ["space", "zulu", "compact", "date"]))
    if ts is not None and ts_style == "date":
        ts = ts.replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=None)
    return Row(
        # Mostly valid values; now and then one a rule rejects (or an integer a float cannot hold).
        id=draw(st.sampled_from([2**53 + 1, -1])) if sometimes(draw, 25) else draw(st.integers(0, 30)),
        date=draw(st.sampled_from(WRONG_DATES)) if sometimes(draw, 20) else DAY,
        amount=draw(
            st.one_of(st.none(), st.floats(-1e6, 1e6, allow_nan=False))
            if sometimes(draw, 20)
            else st.one_of(st.none(), st.floats(-1000, 1000, allow_nan=False), st.integers(-1000, 1000))
        ),
        kind=draw(st.sampled_from(["d", "A", ""]))
        if sometimes(draw, 20)
        else draw(st.sampled_from(["a", "b", "c", None])),
        ts=ts,
        flag=flag,
        flag_text=draw(st.sampled_from(FLAG_TEXT[flag])) if flag is not None else "",
        note=draw(st.one_of(st.none(), st.text(NOTE_CHARS, max_size=8), st.sampled_from(sorted(NULL_TOKENS)))),
        ts_style=ts_style,
    )


# ---- files


@dataclass
class Built:
    """One delivered file and what the generator knows of it."""

    name: str
    data: bytes
    fmt: str  # csv, csv.gz, parquet, other
    #: Physical records the file holds, counted here (None: cannot be counted, e.g. a cut Parquet footer).
    records: int | None
    #: Typed rows validated/ may hold from this file (any subset: the contract decides).
    allowed: Counter = field(default_factory=Counter)
    #: Validated rows this file may add that the generator did not write as such (a row cut by a truncation).
    slack: int = 0
    faults: list[str] = field(default_factory=list)
    #: Stored by writing the path directly (a name the storage API refuses).
    unsafe: bool = False

    def describe(self) -> str:
        head = self.data[:1500]
        return (
            f"{self.name} ({self.fmt}, {len(self.data)} bytes, records={self.records}, faults={self.faults}): {head!r}"
        )


def csv_records(raw: bytes) -> int:
    """Physical records of CSV bytes: non-empty lines after the header, ``\\n``, ``\\r\\n`` or ``\\r``."""
    return sum(1 for line in raw.splitlines()[1:] if line)


def quote(cell: str) -> str:
    if any(ch in cell for ch in ',"\r\n'):
        return '"' + cell.replace('"', '""') + '"'
    return cell


BAD_TEXT = {
    "id": ["abc", "1.5", "12x", "9007199254740993"],
    "year": ["twenty", "2024.5"],
    "month": ["III", "3.0.1"],
    "day": ["5th"],
    "amount": ["abc", "1,5", "--1", "inf", "1e999"],
    "ts": ["yesterday", "2024-13-45T99:00:00", "05/03/2024"],
    "flag": ["yes", "2", "t"],
}
EXTRA_NAMES = ["extra", "_reasons", "_records", "_rule_ids", "_source_file", "_source_file__delivered", "_raw_line"]


@st.composite
def csv_file(draw, name: str, gz: bool) -> Built:
    data_rows = draw(st.lists(rows(), max_size=40))
    faults: list[str] = []
    columns = list(draw(st.permutations(COLUMNS)))
    missing = draw(st.sets(st.sampled_from(COLUMNS), min_size=1, max_size=2)) if sometimes(draw, 8) else set()
    if missing:
        faults.append(f"missing:{sorted(missing)}")
        columns = [c for c in columns if c not in missing]
    extra = (
        draw(st.lists(st.sampled_from(EXTRA_NAMES), unique=True, min_size=1, max_size=2)) if sometimes(draw, 6) else []
    )
    if extra:
        faults.append(f"extra:{extra}")
        columns += extra
    header = list(columns)
    if columns and sometimes(draw, 15):
        header.append(columns[0])  # a duplicated column name (and a value for it)
        faults.append("duplicated_header")
    # Rows: a dict of cells each; row-level faults change cells or fields.
    table = [r.cells() for r in data_rows]
    for cells in table:
        for e in extra:
            cells[e] = draw(st.sampled_from(["x", "", "1", "[1, 2]"]))
    dupes = draw(st.lists(st.integers(0, 39), min_size=1, max_size=3)) if sometimes(draw, 5) else []
    for i in dupes:
        if table:
            i %= len(table)
            table.append(dict(table[i]))
            data_rows.append(data_rows[i])
            faults.append(f"dup_row:{i}")
    written = [[quote(cells[c]) for c in header] for cells in table]  # each row as the export wrote it
    typed_cols = [c for c in BAD_TEXT if c in columns]
    if typed_cols and sometimes(draw, 5):
        for i, col, k in draw(
            st.lists(
                st.tuples(st.integers(0, 39), st.sampled_from(typed_cols), st.integers(0, 4)), min_size=1, max_size=3
            )
        ):
            if table:
                i %= len(table)
                table[i][col] = BAD_TEXT[col][k % len(BAD_TEXT[col])]
                faults.append(f"bad_text:{i}:{col}")
    lines = [[quote(cells[c]) for c in header] for cells in table]
    reshaped = st.lists(st.tuples(st.integers(0, 39), st.sampled_from(["more", "fewer"])), min_size=1, max_size=2)
    reshaped_rows: set[int] = set()
    for i, how in draw(reshaped) if sometimes(draw, 5) else []:
        if lines and i % len(lines) not in reshaped_rows:
            # Once per row: a field dropped then "surplus" added would be a valid row of other values.
            i %= len(lines)
            reshaped_rows.add(i)
            if how == "more":
                lines[i] = [*lines[i], "surplus"]
            elif lines[i]:
                lines[i] = lines[i][:-1]
            faults.append(f"{how}_fields:{i}")
    text_lines = [",".join(header)] + [",".join(f) for f in lines]
    # A stray quote opening a field: the parser may swallow the lines after it.
    stray = [draw(st.tuples(st.integers(0, 39), st.integers(0, 12)))] if sometimes(draw, 6) else []
    for i, j in stray:
        if lines:
            i %= len(lines)
            fields = list(lines[i])
            j = min(j, len(fields) - 1)
            if j >= 0:
                fields[j] = '"' + fields[j]
                text_lines[i + 1] = ",".join(fields)
                lines[i] = fields
                faults.append(f"stray_quote:{i}:{j}")
    # Blank and whitespace-only lines between rows.
    fillers = st.lists(st.tuples(st.integers(1, 41), st.sampled_from(["", " ", "\t"])), min_size=1, max_size=2)
    for pos, filler in draw(fillers) if sometimes(draw, 5) else []:
        text_lines.insert(min(pos, len(text_lines)), filler)
        faults.append(f"filler_line:{pos}:{filler!r}")
    eol = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    if eol != "\n":
        faults.append(f"eol:{eol!r}")
    final_eol = draw(st.sampled_from([True, True, False]))
    text = eol.join(text_lines) + (eol if final_eol else "")
    encoding = "latin-1" if sometimes(draw, 10) else "utf-8"
    if encoding == "latin-1":
        faults.append("latin-1")
        header_line = text_lines[0]
        text = text.replace(header_line, header_line + ",café", 1)  # an é the export wrote as one byte
        raw = text.encode("latin-1", errors="replace")
    else:
        raw = text.encode("utf-8")
    if sometimes(draw, 8):
        raw = b"\xef\xbb\xbf" + raw
        faults.append("bom")
    if sometimes(draw, 15):
        raw = b""
        faults.append("empty")
    delivered = gzip.compress(raw, mtime=0) if gz else raw
    if sometimes(draw, 15) and delivered:
        kind = draw(st.sampled_from(["gz_not_gz", "not_gz_gz"]))
        if gz and kind == "gz_not_gz":
            delivered = raw  # named .csv.gz, plain text
            faults.append("named_gz_plain")
        elif not gz and kind == "not_gz_gz":
            delivered = gzip.compress(raw, mtime=0)  # named .csv, gzip bytes
            faults.append("named_csv_gzip")
    truncated = False
    if delivered and sometimes(draw, 8):
        cut = draw(st.integers(0, len(delivered) - 1))
        delivered = delivered[:cut]
        truncated = True
        faults.append(f"truncated:{cut}")
    # What the step can count: CSV bytes that decompress (when named .gz).
    if name.lower().endswith(".gz"):
        try:
            counted_raw = gzip.decompress(delivered)
        except (OSError, EOFError):
            counted_raw = None
    else:
        counted_raw = delivered
    records = None if counted_raw is None else csv_records(counted_raw)
    # Validated rows may only be clean rows of this file, with every contract column present.
    allowed: Counter = Counter()
    slack = 0
    if not missing:
        # A row whose line a fault changed (faults may cancel out: a field added, then removed) is not clean.
        for r, fields, original in zip(data_rows, lines, written, strict=True):
            across_lines = any(ch in r.cells()["note"] for ch in "\r\n")  # a value across lines is malformed
            if fields == original and not across_lines:
                allowed[r.typed(csv=True)] += 1
    if truncated and (counted_raw or b"").count(b'"') % 2 == 0:
        # The last line cut short may be a valid row of other values: no reader can tell. Not when the cut
        # leaves a quote open: a value cut inside its quotes is a malformed record, never a validated row.
        slack += 1
    if encoding == "latin-1" and counted_raw is not None:
        try:
            counted_raw.decode("utf-8")
            slack += len(data_rows)  # cut before the é: valid UTF-8 of other values
        except UnicodeDecodeError:
            pass
    return Built(name, delivered, "csv.gz" if gz else "csv", records, allowed, slack, faults)


def _ts_array(values: list[dt.datetime | None]) -> pa.Array:
    utc = [None if v is None else (v if v.tzinfo else v.replace(tzinfo=UTC)).astimezone(UTC) for v in values]
    return pa.array(utc, pa.timestamp("us", tz="UTC"))


def _parquet_column(col: str, data_rows: list[Row], variant: str) -> pa.Array:
    """A contract column of a Parquet file, maybe of another type.

    A column of another type either keeps its values (``as_text``, ``other_width``, ``naive_ts``,
    ``utf8_binary``: rows validate as written) or makes every present value a type mismatch
    (``binary`` that is not UTF-8, ``list``, ``struct``: only rows where it is null can validate,
    with the null the generator wrote).
    """
    values = [
        getattr(r, col) if col not in ("year", "month", "day") else r.date[COLUMNS.index(col) - 1] for r in data_rows
    ]
    if col == "amount":
        values = [None if v is None else float(v) for v in values]
    base_types = {
        "id": pa.int64(),
        "year": pa.int64(),
        "month": pa.int64(),
        "day": pa.int64(),
        "amount": pa.float64(),
        "kind": pa.string(),
        "flag": pa.bool_(),
        "note": pa.string(),
    }
    if variant == "as_is":
        return _ts_array(values) if col == "ts" else pa.array(values, base_types[col])
    if variant == "as_text":  # the same values as strings
        if col == "ts":
            return pa.array([None if r.ts is None else r.ts_text() for r in data_rows], pa.string())
        if col == "amount":
            return pa.array([None if v is None else repr(v) for v in values], pa.string())
        if col == "flag":
            return pa.array([None if v is None else ("true" if v else "false") for v in values], pa.string())
        return pa.array([None if v is None else str(v) for v in values], pa.string())
    if variant == "other_width":  # float ids, int32 dates, large strings, ns and zoned timestamps, int flags
        if col == "ts":
            return _ts_array(values).cast(pa.timestamp("ns", tz="Asia/Tokyo"))
        if col == "flag":
            return pa.array([None if v is None else int(v) for v in values], pa.int8())
        if col in ("kind", "note"):
            return pa.array(values, pa.large_string())
        if col == "amount":
            return pa.array(values, pa.float64())
        if col == "id":
            return pa.array([None if v is None else float(v) for v in values], pa.float64())
        return pa.array(values, pa.int32())
    if variant == "naive_ts" and col == "ts":
        return _ts_array(values).cast(pa.timestamp("us"))
    if variant == "utf8_binary":  # bytes of UTF-8 text: read as the text
        return pa.array([None if v is None else str(v).encode() for v in values], pa.binary())
    if variant == "binary":  # bytes that are not UTF-8: a type mismatch
        return pa.array([None if v is None else (str(v).encode() + b"\xff") for v in values], pa.binary())
    if variant == "list":
        return pa.array([None if v is None else [str(v)] for v in values], pa.list_(pa.string()))
    if variant == "struct":
        return pa.array([None if v is None else {"v": str(v)} for v in values], pa.struct([("v", pa.string())]))
    raise AssertionError(variant)


VARIANTS = ["as_text", "other_width", "naive_ts", "utf8_binary", "binary", "list", "struct"]
EXTRA_PARQUET = {
    "list": lambda n: pa.array([[i, i + 1] for i in range(n)], pa.list_(pa.int64())),
    "struct": lambda n: pa.array(
        [{"a": i, "b": "x"} for i in range(n)], pa.struct([("a", pa.int64()), ("b", pa.string())])
    ),
    "binary": lambda n: pa.array([bytes([i % 256, 0xFF]) for i in range(n)], pa.binary()),
    "text": lambda n: pa.array([f"v{i}" for i in range(n)], pa.string()),
    "map": lambda n: pa.array([[("k", i)] for i in range(n)], pa.map_(pa.string(), pa.int64())),
}


@st.composite
def parquet_file(draw, name: str) -> Built:
    data_rows = draw(st.lists(rows(), max_size=40))
    faults: list[str] = []
    for i in draw(st.lists(st.integers(0, 39), min_size=1, max_size=3)) if sometimes(draw, 5) else []:
        if data_rows:
            i %= len(data_rows)
            data_rows.append(data_rows[i])
            faults.append(f"dup_row:{i}")
    n = len(data_rows)
    missing = draw(st.sets(st.sampled_from(COLUMNS), min_size=1, max_size=2)) if sometimes(draw, 8) else set()
    if missing:
        faults.append(f"missing:{sorted(missing)}")
    retyped = (
        draw(st.dictionaries(st.sampled_from(COLUMNS), st.sampled_from(VARIANTS), min_size=1, max_size=2))
        if sometimes(draw, 3)
        else {}
    )
    arrays, names = [], []
    for col in draw(st.permutations(COLUMNS)):
        if col in missing:
            continue
        variant = retyped.get(col, "as_is")
        if variant == "naive_ts" and col != "ts":
            variant = "as_is"
        if variant == "other_width" and col == "id" and any(abs(r.id) > 2**31 for r in data_rows):
            variant = "as_text"
        arr = _parquet_column(col, data_rows, variant)
        if variant != "as_is":
            faults.append(f"{col}:{variant}")
        arrays.append(arr)
        names.append(col)
    extras = st.lists(
        st.tuples(st.sampled_from(EXTRA_NAMES), st.sampled_from(sorted(EXTRA_PARQUET))), min_size=1, max_size=2
    )
    for extra_name, kind in draw(extras) if sometimes(draw, 5) else []:
        if extra_name not in names:
            arrays.append(EXTRA_PARQUET[kind](n))
            names.append(extra_name)
            faults.append(f"extra:{extra_name}:{kind}")
    if names and sometimes(draw, 12):
        arrays.append(arrays[0])
        names.append(names[0])
        faults.append("duplicated_column")
    table = pa.Table.from_arrays(arrays, names=names) if names else pa.table({"x": pa.nulls(n)})
    buf = io.BytesIO()
    pq.write_table(table, buf, row_group_size=draw(st.sampled_from([1000, 1, 7])))
    data = buf.getvalue()
    records: int | None = n
    if sometimes(draw, 15):
        data = b""
        records = 0
        faults.append("empty")
    elif sometimes(draw, 8):
        cut = draw(st.integers(0, len(data) - 1))
        data = data[:cut]
        records = 0 if cut == 0 else None  # a cut footer: rows unknown
        faults.append(f"truncated:{cut}")
    allowed: Counter = Counter()
    if not missing:
        # A column of another type keeps its values (then rows validate as written) or flags every
        # present value (then only rows where it is null can validate, with the null written).
        for r in data_rows:
            allowed[r.typed(csv=False)] += 1
    return Built(name, data, "parquet", records, allowed, 0, faults)


@st.composite
def other_file(draw, name: str) -> Built:
    return Built(name, draw(st.binary(max_size=40)), "other", None, faults=["unsupported_suffix"])


STEMS = ["part_a", "part_b", "part_c", "extra_1", "sub/part_d", "Part_A"]


@st.composite
def deliveries(draw) -> list[Built]:
    count = draw(st.integers(1, 4))
    stems = draw(st.lists(st.sampled_from(STEMS), min_size=count, max_size=count, unique=True))
    files = []
    for stem in stems:
        suffix = draw(st.sampled_from([".csv"] * 4 + [".parquet"] * 3 + [".csv.gz"] * 2 + [".CSV", ".txt"]))
        unsafe = sometimes(draw, 40)
        name = stem.replace("_", " ", 1) + suffix if unsafe else stem + suffix
        if suffix == ".parquet":
            built = draw(parquet_file(name))
        elif suffix == ".txt":
            built = draw(other_file(name))
        else:
            built = draw(csv_file(name, gz=suffix == ".csv.gz"))
        if unsafe:
            built.unsafe, built.records, built.allowed, built.slack = True, None, Counter(), 0
            built.faults.append("unsafe_name")
        files.append(built)
    return files


# ---- landing and reading back


def clear_partition(storage) -> None:
    for prefix in (
        catalog.landing_dir(DATASET, DS),
        catalog.validated_dir(DATASET, DS),
        catalog.quarantine_dir(DATASET, DS),
    ):
        storage.delete_prefix(prefix)
    storage.delete(catalog.validation_report(DATASET, DS))
    storage.delete(catalog.validation_html(DATASET, DS))


def land(storage, files: list[Built], *, marker: bool = True) -> None:
    """As upstream does: every data file, then the ready marker."""
    for f in files:
        if f.unsafe:  # a name the storage API refuses to write, as another tool would leave it
            path = Path(storage.root, catalog.landing_dir(DATASET, DS), f.name)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(f.data)
        else:
            storage.write_bytes(catalog.landing_file(DATASET, DS, f.name), f.data)
    if marker:
        storage.write_bytes(catalog.landing_file(DATASET, DS, MARKER), b"")
        # Never older than a file on a coarse clock: the marker is written last.
        marker_path = Path(storage.root, catalog.landing_file(DATASET, DS, MARKER))
        newest = max(os.stat(Path(storage.root, catalog.landing_dir(DATASET, DS), f.name)).st_mtime_ns for f in files)
        st_marker = os.stat(marker_path)
        if st_marker.st_mtime_ns < newest:
            os.utime(marker_path, ns=(st_marker.st_atime_ns, newest))


def outcome(
    project, storage, contract, batch_rows: int | None = None
) -> tuple[str, dict[str, Any] | None, BaseException | None]:
    """Validate; ``(status, summary, exception)``. Any exception outside the documented ones fails the test."""
    try:
        summary = validate_partition(project, DS, storage=storage, contract=contract, batch_rows=batch_rows)
    except ContractHalt as exc:
        assert exc.exit_code == 3
        return "halted", exc.summary, exc
    except (NothingLanded, DeliveryChanged) as exc:
        assert isinstance(exc, MissingInput) and exc.exit_code == 5
        return "waiting", None, exc
    return "published", summary, None


def partition_objects(storage) -> list[str]:
    return storage.list(catalog.validated_dir(DATASET, DS)) + storage.list(catalog.quarantine_dir(DATASET, DS))


def describe(files: list[Built], contract_text: str) -> None:
    note("contract:\n" + contract_text)
    for f in files:
        note(f.describe())


# ---- the oracle


def check_accounting(storage, files: list[Built], status: str, summary: dict[str, Any]) -> None:
    assert summary["status"] == status, f"summary status {summary['status']!r}, outcome {status!r}"
    assert summary["landed_files"] == len(files)
    countable = [f for f in files if f.records is not None]
    true_total = sum(f.records for f in countable)
    assert summary["landed_records"] >= true_total, (
        f"landed_records {summary['landed_records']} < {true_total} records written in countable files "
        f"{[(f.name, f.records) for f in countable]}"
    )
    if len(countable) == len(files):
        assert summary["landed_records"] == true_total, (
            f"landed_records {summary['landed_records']} != {true_total} records written "
            f"{[(f.name, f.records) for f in files]}"
        )
    assert summary["lost_records"] >= 0
    assert summary["landed_rows"] >= 0
    # File by file: what the report counted in each file is what the generator wrote in it.
    by_name = {f.name: f for f in files}
    report = storage.read_json(catalog.validation_report(DATASET, DS))
    counted = [(f["file"], f["records"]) for f in report["files"]]
    counted += [(f["file"], f["records"]) for f in summary["quarantined_files"] if f["rule"] == "file_unreadable"]
    for name, records in counted:
        written = by_name[name].records if name in by_name else None
        if written is not None and records is not None:
            assert records == written, f"{name}: {records} record(s) counted, {written} written"


def check_published(storage, files: list[Built], summary: dict[str, Any]) -> None:
    validated = storage.read_parquet(catalog.validated_file(DATASET, DS))
    quarantine = storage.read_parquet(catalog.quarantine_rows(DATASET, DS))
    assert validated.num_rows == summary["validated_rows"], "validated/ rows differ from the summary"
    assert quarantine.num_rows == summary["quarantined_rows"], "quarantine rows differ from the summary"
    q_records = sum(quarantine.column("_records").to_pylist()) if quarantine.num_rows else 0
    assert q_records == summary["quarantined_records"], "sum of _records differs from quarantined_records"
    assert summary["landed_rows"] == summary["validated_rows"] + summary["quarantined_rows"], "rows unaccounted"
    assert (
        summary["validated_rows"] + summary["quarantined_records"] + summary["lost_records"]
        == summary["landed_records"]
    ), "records unaccounted: validated + quarantined_records + lost != landed_records"
    for i, ids in enumerate(quarantine.column("_rule_ids").to_pylist()):
        assert ids, f"quarantined row {i} names no rule"
    by_name = {f.name: f for f in files}
    strays = set(quarantine.column("_source_file").to_pylist()) - set(by_name)
    assert not strays, f"quarantined rows from files that were not delivered: {strays}"
    for kept in summary["quarantined_files"]:
        if kept["rule"] == "file_unreadable" and kept["bytes"] > 0:
            key = catalog.quarantine_file(DATASET, DS, kept["file"])
            assert storage.exists(key), f"{kept['file']} quarantined whole but not kept in {key}"
            assert storage.read_bytes(key) == by_name[kept["file"]].data, f"{kept['file']}: the copy differs"
    report = storage.read_json(catalog.validation_report(DATASET, DS))
    assert report["summary"]["status"] == "published"
    # Every validated row is a row the generator wrote whole (a swallowing row or an invented value is not).
    allowed = sum((f.allowed for f in files), Counter())
    got = Counter(typed_of_validated(r) for r in validated.to_pylist())
    unexpected = got - allowed
    slack = sum(f.slack for f in files)
    assert sum(unexpected.values()) <= slack, f"validated rows the delivery did not hold as such: {dict(unexpected)}"


def check_halted(storage, summary: dict[str, Any]) -> None:
    left = partition_objects(storage)
    assert not left, f"halted, yet left for the partition: {left}"
    report = storage.read_json(catalog.validation_report(DATASET, DS))
    assert report["summary"]["status"] == "halted"
    assert summary["rules_halted"], "halted without a halting rule"


def counts(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: summary[k] for k in SUMMARY_COUNTS}


def run_property(storage, project, contract, contract_text: str, files: list[Built], rerun: bool) -> None:
    describe(files, contract_text)
    clear_partition(storage)
    land(storage, files)
    status, summary, exc = outcome(project, storage, contract)
    note(f"outcome: {status} {exc!r}")
    count(f"outcome: {status}")  # pytest --hypothesis-show-statistics shows what the generator reached
    for fault in {f.split(":")[0] for b in files for f in b.faults}:
        count(f"fault: {fault}")
    if status == "halted":
        count(f"halted by: {', '.join(summary['rules_halted'])}")
    if status == "waiting":
        assert not partition_objects(storage), "waiting, yet wrote outputs"
        return
    assert summary is not None
    note(f"summary: {counts(summary)}")
    check_accounting(storage, files, status, summary)
    if status == "published":
        check_published(storage, files, summary)
    else:
        check_halted(storage, summary)
    if rerun:
        # Again, in batches of 3 rows: files split across batches, small files sharing one. The outputs
        # are the same bytes and the report the same decision as when the day is read in one batch.
        before = published_state(storage)
        status2, summary2, _ = outcome(project, storage, contract, batch_rows=3)
        assert status2 == status, f"re-run: {status2}, first run: {status}"
        assert counts(summary2) == counts(summary), "a re-run of the same delivery counted differently"
        after = published_state(storage)
        assert after["objects"] == before["objects"], "batched: other outputs than in one batch"
        assert after["rules"] == before["rules"], "batched: another rule outcome than in one batch"
        assert after["files"] == before["files"], "batched: files counted otherwise than in one batch"


def published_state(storage) -> dict[str, Any]:
    """What a validation left: every output object's bytes, and the report's rules and files.

    A key-uniqueness rule's GX count is left out of the comparison: run batch
    by batch, GX sees duplicates within a batch only (the decision counts the
    day's over every batch).
    """
    objects = {k: storage.read_bytes(k) for k in partition_objects(storage)}
    report = storage.read_json(catalog.validation_report(DATASET, DS))
    rules = [
        {k: v for k, v in r.items() if not (r["kind"] == "unique" and k.startswith("gx_"))} for r in report["rules"]
    ]
    return {"objects": objects, "rules": rules, "files": report["files"]}


# ---- the properties


# ---- the minimal deliveries the properties found (run first, as explicit examples)

HEADER = ",".join(COLUMNS).encode() + b"\n"


def found(name: str, data: bytes, *allowed: Row) -> Built:
    """A CSV file of a minimal failing delivery, with the rows validated/ may hold from it."""
    fmt = "csv.gz" if name.endswith(".gz") else "csv"
    return Built(name, data, fmt, csv_records(data), Counter(r.typed(csv=True) for r in allowed))


def row(i: int, ts: str | None = None, note_: str | None = None, amount: float | None = None) -> Row:
    stamp = None if ts is None else dt.datetime.fromisoformat(ts)
    return Row(i, DAY, amount, "a", stamp, True, "true", note_)


FOUND = {
    # A malformed record holding a vertical tab (or \x0c, \x1c-\x1e, \x85, \u2028, \u2029): its records were
    # counted with str.splitlines, the file's with bytes.splitlines -> RuntimeError "record accounting broken".
    "vertical_tab_in_malformed_record": (
        Knobs(),
        [found("part_a.csv", HEADER + b"1,2024,3,5,,a,,true,x\x0bz,surplus\n")],
    ),
    # An integer above 2**53 is rounded to 2**53 before the "safe integer" check: published as another id.
    "integer_above_2_53_published_rounded": (
        Knobs(),
        [found("part_a.csv", HEADER + b"9007199254740993,2024,3,5,,a,,true,\n", row(2**53 + 1))],
    ),
    # Every file unreadable and the day published (here: no bad bytes, so no rate): the empty frame's
    # float64 columns cannot be cast to timestamp -> ArrowNotImplementedError.
    "only_an_empty_unsupported_file": (Knobs(max_rate=0.05), [Built("notes.txt", b"", "other", None)]),
    # A timestamp without an offset after one with an offset is shifted by that offset (read as +02:00, not UTC).
    "naive_timestamp_after_an_offset": (
        Knobs(),
        [
            found(
                "part_a.csv",
                HEADER + b"1,2024,3,5,,a,2001-01-01T00:00:00+02:00,true,\n2,2024,3,5,,a,2000-01-01T00:00:00,true,\n",
                row(1, "2001-01-01T00:00:00+02:00"),
                row(2, "2000-01-01T00:00:00"),
            )
        ],
    ),
    # A stray quote swallows the next lines into one value; a null earlier in the row hides the line
    # breaks from row_spans (pyarrow's or_ is not Kleene): the swallowing row is published.
    "stray_quote_after_a_null_is_published": (
        Knobs(),
        [
            found(
                "part_a.csv",
                HEADER + b'1,2024,3,5,,a,,true,"oops\n2,2024,3,5,1.5,a,,true,ok\n3,2024,3,5,2.5,a,,true,fine\n',
                row(2, note_="ok", amount=1.5),
                row(3, note_="fine", amount=2.5),
            )
        ],
    ),
    # A quote opened in the last field of the last line and never closed: one physical record, but the row's
    # span is counted as max(2, lines) = 2 and "count what was read, never less" reports 2 landed records.
    "unclosed_quote_on_the_last_line_counts_twice": (
        Knobs(),
        [found("part_a.csv", HEADER + b'0,2024,3,5,1.5,a,2024-03-05T00:00:00,true,"\n')],
    ),
    # A file cut inside a quoted value (a transfer cut short): the quote left open at the end of the file was
    # read as closed, and the last row published with its value cut ("hello, wo").
    "quote_left_open_by_a_cut_publishes_a_cut_value": (
        Knobs(max_rate=0.05),
        [
            found(
                "part_a.csv",
                HEADER + b'1,2024,3,5,1.5,a,,true,ok\n2,2024,3,5,1.5,a,,true,"hello, wo',
                row(1, note_="ok", amount=1.5),
                row(2, note_="hello, world", amount=1.5),
            )
        ],
    ),
    # A uniqueness rule on one column loads, then GX refuses it (ExpectCompoundColumnsToBeUnique needs two).
    "one_column_key": (Knobs(key=("id",)), [found("part_a.csv", HEADER + b"1,2024,3,5,,a,,true,\n", row(1))]),
}


@pytest.mark.parametrize("case", sorted(FOUND))
def test_minimal_deliveries_the_properties_found(storage, project, contracts, case):
    """Each delivery the properties shrank a failure to, under the same oracle (a regression test once fixed)."""
    k, files = FOUND[case]
    contract, text = contracts(k)
    run_property(storage, project, contract, text, files, rerun=True)


@examples(1.3)
@given(k=knobs(sources=False), files=deliveries(), rerun=st.sampled_from([False, False, True]))
def test_any_delivery_is_accounted_for(storage, project, contracts, k, files, rerun):
    contract, text = contracts(k)
    run_property(storage, project, contract, text, files, rerun)


@examples(0.7)
@given(k=knobs(sources=True), files=deliveries(), rerun=st.sampled_from([False, False, True]))
def test_any_delivery_with_expected_sources_is_accounted_for(storage, project, contracts, k, files, rerun):
    contract, text = contracts(k)
    run_property(storage, project, contract, text, files, rerun)


@st.composite
def clean_delivery(draw) -> list[Built]:
    stems = draw(st.lists(st.sampled_from(["part_a", "part_b", "sub/part_c"]), min_size=1, max_size=3, unique=True))
    out = []
    for stem in stems:
        data_rows = draw(st.lists(rows(), min_size=1, max_size=5))
        text = (
            ",".join(COLUMNS) + "\n" + "".join(",".join(quote(r.cells()[c]) for c in COLUMNS) + "\n" for r in data_rows)
        )
        out.append(Built(stem + ".csv", text.encode(), "csv", csv_records(text.encode())))
    return out


def check_waits(storage, project, contract, files: list[Built], published_before: bool, change: str, later_ns: int):
    """Land a delivery, maybe validate it, change a file to ``later_ns`` after the marker: the step must wait."""
    clear_partition(storage)
    land(storage, files)
    before: dict[str, bytes] = {}
    if published_before:
        status, _, exc = outcome(project, storage, contract)
        note(f"first validation: {status} {exc!r}")
        before = {key: storage.read_bytes(key) for key in partition_objects(storage)}
    marker = Path(storage.root, catalog.landing_file(DATASET, DS, MARKER))
    # The marker's time as storage reads it: the later of its mtime and ctime (its rename may be a clock tick later).
    marker_ns = max(os.stat(marker).st_mtime_ns, os.stat(marker).st_ctime_ns)
    target_name = {
        "new_file": "late.csv",
        "new_file_in_folder": "late/part_z.csv",
        "rewrite": files[-1].name,
        "touch": files[0].name,
    }[change]
    target = Path(storage.root, catalog.landing_file(DATASET, DS, target_name))
    if change != "touch":
        storage.write_bytes(catalog.landing_file(DATASET, DS, target_name), files[0].data + files[0].data[-60:])
    st_target = os.stat(target)
    os.utime(target, ns=(st_target.st_atime_ns, marker_ns + later_ns))
    note(f"{change} {target_name}: mtime = marker + {later_ns} ns")
    with pytest.raises(NothingLanded) as exc_info:
        validate_partition(project, DS, storage=storage, contract=contract)
    assert exc_info.value.exit_code == 5
    after = {key: storage.read_bytes(key) for key in partition_objects(storage)}
    assert after == before, "the step wrote validated/ or quarantine/ while the delivery was being rewritten"


@examples(0.5)
@given(
    files=clean_delivery(),
    published_before=st.booleans(),
    change=st.sampled_from(["new_file", "rewrite", "touch", "new_file_in_folder"]),
    later_ns=st.one_of(st.integers(1, 10**10), st.sampled_from([1, 999, 10**6, 10**9])),
)
def test_a_file_newer_than_the_marker_makes_the_step_wait(
    storage, project, contracts, files, published_before, change, later_ns
):
    """A delivery rewritten after its ``_SUCCESS`` marker is never validated: exit 5, nothing written."""
    contract, text = contracts(Knobs())
    describe(files, text)
    check_waits(storage, project, contract, files, published_before, change, later_ns)


def test_a_file_1ns_newer_than_the_marker_makes_the_step_wait(storage, project, contracts):
    """Found by the marker property: ``modified`` was ``ns / 1e9``, a float with ~240 ns steps, so a file 1 ns
    newer than the marker was not newer; delivery() now compares whole nanoseconds (``modified_ns``)."""
    contract, _ = contracts(Knobs())
    files = [found("part_a.csv", HEADER + b"0,2024,3,5,,a,,true,\n")]
    check_waits(storage, project, contract, files, published_before=False, change="touch", later_ns=1)


def test_the_contract_the_properties_use_is_valid(contracts):
    """Every generated contract loads (a ConfigError there would be the test's fault, not the delivery's)."""
    for k in (Knobs(), Knobs(max_rate=0.0, empty="critical", malformed="critical", sources=True)):
        contract, _ = contracts(k)
        assert [c.name for c in contract.columns] == list(COLUMNS)
        assert math.isclose(contract.max_quarantine_rate, k.max_rate)
