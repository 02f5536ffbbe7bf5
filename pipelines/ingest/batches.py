"""Reading one landed file in record batches, in memory that does not grow with the file.

:class:`FileReader` streams a landed file from storage and yields it as
:class:`~pipelines.ingest.landing.ParsedFile` chunks of about ``rows`` rows
each, which the validation step coerces, checks and spills one at a time.
What the file as a whole turns out to be is known only at its end:
:attr:`FileReader.result` is then a :class:`FileRead` (readable) or a
:class:`~pipelines.ingest.landing.BadFile` (unreadable; the chunks already
yielded must be discarded). The outcome is the one reading the whole file at
once gives, decided in the same order:

1. the file cannot be opened (unsafe name, out of the root, no permission);
2. it is 0 bytes: empty;
3. a ``.csv.gz`` is cut short or corrupt: unreadable, its records counted on
   what inflated before the fault;
4. it holds no records (a header only): empty;
5. it is not UTF-8, or the CSV parser gives up: unreadable, every record
   counted and lost.

**Records are counted on the bytes as they stream past** (:class:`Tap`), so
the parser cannot lose input unseen: a CSV record is a non-empty line after
the header, that is a maximal run of bytes that are neither ``\\r`` nor
``\\n``, whichever line break ends it (:data:`~pipelines.ingest.landing.LINE_BREAK`). The quote count
(an open quote at the end of the file flags its last row), the UTF-8 check
and the file's last bytes are kept the same way. Parquet files are read row
group by row group from a seekable file (on S3, a streamed download to a
temporary file), their records taken from the footer.
"""

from __future__ import annotations

import codecs
import io
import logging
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipelines.core.errors import ConfigError, MissingInput
from pipelines.ingest.landing import (
    MAX_DECOMPRESSED_BYTES,
    NULL_TOKENS,
    SUPPORTED_SUFFIXES,
    BadFile,
    ParsedFile,
    _csv_header,
    _header_or_none,
    _printable,
    row_spans,
)

if TYPE_CHECKING:
    import pyarrow as pa

    from pipelines.core.contracts import Contract
    from pipelines.core.storage import Storage

log = logging.getLogger(__name__)

#: Rows per batch: a batch's memory (raw text, typed frame, GX's work) is what validation holds at once.
DEFAULT_BATCH_ROWS = 200_000
#: Bytes the CSV reader parses at a time (it yields a record batch per block).
BLOCK_BYTES = 1 << 22
#: Bytes read from storage per request while streaming.
READ_BYTES = 1 << 22
#: The file's last bytes, kept to tell an open quote at the end from a malformed last record.
TAIL_BYTES = 1 << 16


@dataclass
class FileRead:
    """A readable landed file, as a whole, once all its batches were read (its rows went out in batches)."""

    key: str
    name: str
    size: int
    #: Physical records, counted on the bytes (CSV lines) or the footer (Parquet).
    records: int
    #: Rows the parser produced, and of those the rows whose values span lines (malformed records).
    num_rows: int = 0
    broken_rows: int = 0
    #: Records the parsed rows hold (a row spanning lines holds each of its lines).
    row_records_total: int = 0
    #: Rows that did not split into the header's columns, and the lines they hold.
    malformed_rows: int = 0
    malformed_records: int = 0
    columns: list[str] = field(default_factory=list)
    missing_columns: list[str] = field(default_factory=list)
    extra_columns: list[str] = field(default_factory=list)

    @property
    def lost(self) -> int:
        """Records neither parsed into a row nor kept as a malformed record (never negative)."""
        return max(0, self.records - self.row_records_total - self.malformed_records)

    @property
    def empty(self) -> bool:
        return self.records == 0 and self.num_rows == 0 and not self.malformed_rows

    @property
    def single_rows(self) -> int:
        """Parsed rows that are one record each (not spanning lines)."""
        return self.num_rows - self.broken_rows


class CountedStream:
    """A storage stream that counts the bytes read from it (the file's size as delivered)."""

    def __init__(self, source: Any):
        self.source = source
        self.size = 0

    def read(self, n: int) -> bytes:
        data = self.source.read(n)
        self.size += len(data)
        return data


class GzipStream:
    """Every member of a gzip stream (``cat a.gz b.gz`` is one valid file), inflated as it is read.

    Raises :class:`~pipelines.ingest.landing.GzipError` (from :meth:`read`)
    when the stream is cut short, corrupt, followed by bytes that are not
    gzip, or inflates to more than :data:`~pipelines.ingest.landing.MAX_DECOMPRESSED_BYTES`.
    """

    def __init__(self, source: Any):
        self.source = source
        self.inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self.size = 0
        self.done = False

    def _fail(self, message: str) -> None:
        from pipelines.ingest.landing import GzipError

        self.done = True
        raise GzipError(message)

    def read(self, n: int) -> bytes:
        while not self.done:
            if self.inflater.eof:  # a member ended: another member follows, or nothing
                rest = self.inflater.unused_data
                while len(rest) < 2:
                    more = self.source.read(READ_BYTES)
                    if not more:
                        break
                    rest += more
                if not rest:
                    self.done = True
                    break
                if not rest.startswith(b"\x1f\x8b"):
                    extra = len(rest) + sum(len(b) for b in iter(lambda: self.source.read(READ_BYTES), b""))
                    self._fail(f"{extra} byte(s) after the last gzip member are not gzip")
                self.inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
                data = rest
            elif self.inflater.unconsumed_tail:
                data = self.inflater.unconsumed_tail
            else:
                data = self.source.read(READ_BYTES)
                if not data:
                    self._fail("gzip stream cut short")
            try:
                out = self.inflater.decompress(data, n)
            except zlib.error as exc:
                self._fail(f"corrupt gzip data: {exc}")
            self.size += len(out)
            if self.size > MAX_DECOMPRESSED_BYTES:
                self._fail(f"decompresses to more than {MAX_DECOMPRESSED_BYTES >> 30} GiB")
            if out:
                return out
        return b""


class Tap(io.RawIOBase):
    """A readable stream that counts what flows through it: CSV records, quotes, UTF-8 validity.

    An error of the source (a gzip fault) is kept in :attr:`error` and ends
    the stream, so the CSV reader sees the end of its input rather than an
    error it would word its own way.
    """

    def __init__(self, source: Any):
        import threading

        super().__init__()
        self.source = source
        # The CSV reader reads ahead on an I/O thread while a failed parse drains on this one: every
        # read-and-count holds the lock, so the bytes are counted once each, in order.
        self.lock = threading.Lock()
        self.head = b""  # read to find the header, served again first
        self.size = 0
        self.runs = 0  # maximal runs of bytes that are neither \r nor \n: the non-empty lines
        self.first: int | None = None
        self.last_break = True  # whether the byte before the next one is a line break (or the start)
        self.quotes = 0
        self.decoder = codecs.getincrementaldecoder("utf-8")()
        self.utf8_error: int | None = None  # offset of the first byte that is not UTF-8
        self.tail = b""
        self.error: Exception | None = None

    def readable(self) -> bool:
        return True

    def _pull(self, n: int) -> bytes:
        if self.error is not None:
            return b""
        try:
            data = self.source.read(n)
        except ValueError as exc:  # a GzipError
            self.error = exc
            return b""
        if data:
            self._count(data)
        return data

    def _count(self, data: bytes) -> None:
        import numpy as np

        arr = np.frombuffer(data, dtype=np.uint8)
        brk = (arr == 10) | (arr == 13)
        starts = ~brk
        starts[1:] &= brk[:-1]
        starts[0] &= self.last_break
        self.runs += int(np.count_nonzero(starts))
        self.last_break = bool(brk[-1])
        if self.first is None:
            self.first = int(arr[0])
        self.quotes += int(np.count_nonzero(arr == 34))
        if self.utf8_error is None:
            pending = len(self.decoder.getstate()[0])
            try:
                self.decoder.decode(data)
            except UnicodeDecodeError as exc:
                self.utf8_error = self.size - pending + exc.start
        self.size += len(data)
        self.tail = (self.tail + data)[-TAIL_BYTES:]

    def read_header(self) -> bytes:
        """Read up to the first line break (or the end); the bytes are read again by the parser."""
        with self.lock:
            while b"\n" not in self.head and b"\r" not in self.head:
                more = self._pull(READ_BYTES)
                if not more:
                    break
                self.head += more
            return self.head

    def readinto(self, buf: Any) -> int:
        """Fill ``buf`` (short only at the end: the CSV reader takes a short read for the end of a block)."""
        with self.lock:
            size = len(buf)
            parts, got = [], 0
            if self.head:
                parts.append(self.head[:size])
                self.head = self.head[size:]
                got = len(parts[0])
            while got < size:
                data = self._pull(size - got)
                if not data:
                    break
                parts.append(data)
                got += len(data)
            if self.utf8_error is not None:
                return 0  # the file is unreadable whatever follows: the parser stops here, the count goes on
            data = b"".join(parts)
            buf[: len(data)] = data
            return len(data)

    def drain(self) -> None:
        """Read (and count) the rest of the stream."""
        with self.lock:
            self.head = b""
            while self._pull(READ_BYTES):
                pass
        if self.utf8_error is None:
            try:
                self.decoder.decode(b"", final=True)
            except UnicodeDecodeError as exc:
                self.utf8_error = self.size - len(self.decoder.getstate()[0]) + exc.start

    @property
    def records(self) -> int:
        """Non-empty lines after the header (the first line is never a record, empty or not)."""
        if self.first is None:
            return 0
        return self.runs - (0 if self.first in (10, 13) else 1)


class _Malformed:
    """Rows the CSV reader could not split into the header's columns, handed to the chunk being built."""

    def __init__(self) -> None:
        self.pending: list[tuple[int | None, str]] = []  # met since the last chunk, in file order
        self.last: str | None = None  # the file's last one

    def on_invalid_row(self, row: Any) -> str:
        # A row with the wrong number of fields: keep its text, skip it here,
        # quarantine it later. Never lose it, never fail the whole file.
        self.pending.append((row.number, row.text))
        self.last = row.text
        return "skip"

    def taken(self) -> list[tuple[int | None, str]]:
        out = self.pending[: len(self.pending)]
        del self.pending[: len(out)]  # the reader may append meanwhile: only what was taken goes
        return out


def _open_csv(tap: Tap, names: list[str], on_invalid_row: Any) -> Any:
    """pyarrow's streaming CSV reader over the tap, every column as text."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    return pacsv.open_csv(
        tap,
        # One thread: the invalid-row handler then sees rows in file order, and the
        # step's other core is busy coercing and checking the previous batch.
        read_options=pacsv.ReadOptions(use_threads=False, block_size=BLOCK_BYTES),
        parse_options=pacsv.ParseOptions(newlines_in_values=True, invalid_row_handler=on_invalid_row),
        convert_options=pacsv.ConvertOptions(
            column_types={n: pa.string() for n in names},
            null_values=NULL_TOKENS,
            strings_can_be_null=True,
            quoted_strings_can_be_null=True,
            check_utf8=True,
        ),
    )


class FileReader:
    """Stream one landed file in chunks of about ``rows`` rows; :attr:`result` then says what the file was.

    Iterating yields :class:`~pipelines.ingest.landing.ParsedFile` chunks in
    file order. When iteration ends, :attr:`result` is a :class:`FileRead`
    (the chunks stand) or a :class:`~pipelines.ingest.landing.BadFile` (the
    file is unreadable: discard every chunk it yielded).

    Raises:
        MissingInput: the file vanished while it was read (a delivery changing under the step).
    """

    def __init__(self, storage: Storage, key: str, name: str, contract: Contract, rows: int = DEFAULT_BATCH_ROWS):
        self.storage, self.key, self.name, self.contract, self.rows = storage, key, name, contract, max(1, rows)
        self.result: FileRead | BadFile | None = None

    def __iter__(self) -> Iterator[ParsedFile]:
        from pipelines.core.storage import check_key

        try:
            check_key(self.key)
        except ConfigError:
            reason = "unsafe file name (allowed: letters, digits, . _ = -)"
            self.result = BadFile(self.key, _printable(self.name, 100), reason, -1, copyable=False)
            return
        lower = self.name.lower()
        try:
            if lower.endswith((".csv", ".csv.gz")):
                yield from self._csv()
            elif lower.endswith(".parquet"):
                yield from self._parquet()
            else:
                reason = f"unsupported file type (expected one of {SUPPORTED_SUFFIXES})"
                self.result = BadFile(self.key, self.name, reason, self.storage.size(self.key))
        except ConfigError as exc:  # e.g. a symlink out of the root
            self.result = BadFile(self.key, self.name, _printable(str(exc)), -1, copyable=False)
        except MissingInput:
            raise
        except PermissionError as exc:  # its records cannot be accounted for
            reason = f"cannot read: {_printable(exc.strerror or str(exc))}"
            self.result = BadFile(self.key, self.name, reason, -1, copyable=False)
        # Another OSError while streaming (a read timeout, a reset connection) is no fault of the file:
        # it propagates, the task fails and Airflow retries it.
        if isinstance(self.result, FileRead):
            self._check_count(self.result)

    def _check_count(self, item: FileRead) -> None:
        accounted = item.row_records_total + item.malformed_records
        if accounted > item.records:
            # The reader found more than the bytes (or a Parquet footer) said: count what was read, never less.
            log.warning(
                "%s: %d record(s) read, %d counted on the file; counting %d",
                self.name,
                accounted,
                item.records,
                accounted,
            )
            item.records = accounted

    def _chunk(self, table: pa.Table, **kwargs: Any) -> ParsedFile:
        names = table.column_names
        return ParsedFile(
            self.key,
            self.name,
            table,
            missing_columns=[c for c in self.contract.column_names if c not in names],
            extra_columns=[c for c in names if c not in self.contract.column_names],
            **kwargs,
        )

    def _done(self, file: FileRead, chunk: ParsedFile) -> ParsedFile:
        """Count a chunk into its file's totals, as it is handed out."""
        file.num_rows += chunk.num_rows
        file.broken_rows += 0 if chunk.broken is None else int(chunk.broken.sum())
        file.row_records_total += chunk.row_records_total
        file.malformed_rows += len(chunk.malformed)
        file.malformed_records += chunk.malformed_records
        return chunk

    def _complete(self, file: FileRead, size: int, records: int, names: list[str]) -> FileRead:
        """The file's totals, counted chunk by chunk, with what is known only at its end."""
        file.size, file.records, file.columns = size, records, names
        if records:
            file.missing_columns = [c for c in self.contract.column_names if c not in names]
            file.extra_columns = [c for c in names if c not in self.contract.column_names]
        return file

    # ---------------------------------------------------------------- CSV

    def _csv(self) -> Iterator[ParsedFile]:
        import csv

        import pyarrow as pa

        try:
            source = self.storage.open_read(self.key)
        except OSError as exc:  # no permission: its records cannot be accounted for
            reason = f"cannot read: {_printable(exc.strerror or str(exc))}"
            self.result = BadFile(self.key, self.name, reason, -1, copyable=False)
            return
        try:
            counted = CountedStream(source)
            tap = Tap(GzipStream(counted) if self.name.lower().endswith(".gz") else counted)
            header = tap.read_header()
            if counted.size == 0:
                self.result = FileRead(self.key, self.name, 0, 0)
                return
            malformed = _Malformed()
            names: list[str] = []
            totals = FileRead(self.key, self.name, 0, 0)
            held: ParsedFile | None = None
            failure: str | None = None
            try:
                names = _csv_header(header)
                reader = _open_csv(tap, names, malformed.on_invalid_row)
                for table in self._gather(reader, names):
                    broken, spans = row_spans(table)
                    chunk = self._chunk(table, malformed=malformed.taken(), row_records=spans, broken=broken)
                    if held is not None:
                        yield self._done(totals, held)
                    held = chunk
            except (pa.ArrowException, ValueError, csv.Error, UnicodeDecodeError) as exc:
                failure = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            tap.drain()
            while counted.read(READ_BYTES):  # the rest of a gzip file whose inflating stopped at a fault
                pass
            size = counted.size
            self.result = self._csv_outcome(tap, header, size, failure)
            if self.result is None:  # readable to its end
                if held is None:  # no row parsed: every record was malformed
                    held = self._chunk(pa.table({n: pa.array([], pa.string()) for n in names}))
                held.malformed.extend(malformed.taken())
                self._open_quote_at_end(tap, held, malformed.last)
                yield self._done(totals, held)
                self.result = self._complete(totals, size, tap.records, names)
        finally:
            source.close()

    def _csv_outcome(self, tap: Tap, header: bytes, size: int, failure: str | None) -> FileRead | BadFile | None:
        """What a CSV file read to its end is, in the order the checks apply (None: readable, its rows stand)."""
        from pipelines.ingest.landing import GzipError

        records = tap.records
        if isinstance(tap.error, GzipError):
            return BadFile(self.key, self.name, f"unreadable: {_printable(str(tap.error))}", size, records=records)
        if records == 0:
            return FileRead(self.key, self.name, size, 0, columns=_header_or_none(header))
        if tap.utf8_error is not None:
            reason = f"unreadable: not UTF-8 (invalid byte at offset {tap.utf8_error})"
            return BadFile(self.key, self.name, reason, size, records=records)
        if failure is not None:
            return BadFile(self.key, self.name, f"unreadable: {_printable(failure)}", size, records=records)
        return None

    def _gather(self, reader: Any, names: list[str]) -> Iterator[pa.Table]:
        """The reader's record batches regrouped into tables of exactly ``rows`` rows (the last one fewer)."""
        import pyarrow as pa

        parts: list[Any] = []
        count = 0
        for batch in reader:
            parts.append(batch)
            count += batch.num_rows
            while count >= self.rows:
                table = pa.Table.from_batches(parts)
                yield table.slice(0, self.rows).rename_columns(names)
                rest = table.slice(self.rows)
                parts, count = rest.to_batches(), rest.num_rows
        if count:
            yield pa.Table.from_batches(parts).rename_columns(names)

    @staticmethod
    def _open_quote_at_end(tap: Tap, last: ParsedFile, last_malformed: str | None) -> None:
        """Flag the file's last row when the file ends inside an open quote (a transfer cut mid-value).

        The reader closes the quote at the end of the file and keeps the cut
        value. An odd number of quote characters in the file means a quote
        was left open; unless the file's last record was kept as malformed,
        the last row is flagged (quarantined, never published). A literal
        quote inside an unquoted value also makes the count odd: that costs
        one quarantined row. The file's end is compared on its last
        :data:`TAIL_BYTES` bytes.
        """
        import numpy as np

        if tap.quotes % 2 == 0 or last.num_rows == 0:
            return
        if last_malformed is not None:
            text = last_malformed.encode("utf-8").rstrip(b"\r\n")
            end = tap.tail.rstrip(b"\r\n")
            if (end.endswith(text) if len(text) <= len(end) else text.endswith(end)) and text:
                return
        out = np.zeros(last.num_rows, dtype=bool) if last.broken is None else last.broken.copy()
        out[-1] = True
        last.broken = out

    # ------------------------------------------------------------ Parquet

    def _parquet(self) -> Iterator[ParsedFile]:
        import os

        import pyarrow as pa
        import pyarrow.parquet as pq

        with self.storage.local_copy(self.key) as path:
            size = os.path.getsize(path)
            if size == 0:
                self.result = FileRead(self.key, self.name, 0, 0)
                return
            records = None
            totals = FileRead(self.key, self.name, 0, 0)
            held: ParsedFile | None = None
            try:
                pf = pq.ParquetFile(path)
                records = pf.metadata.num_rows
                names = pf.schema_arrow.names
                if len(set(names)) != len(names):
                    self.result = BadFile(
                        self.key, self.name, "unreadable: duplicated column names", size, records=records
                    )
                    return
                for batch in pf.iter_batches(batch_size=self.rows):
                    if held is not None:
                        yield self._done(totals, held)
                    held = self._chunk(pa.Table.from_batches([batch]))
            except (pa.ArrowException, ValueError, OSError, EOFError) as exc:
                text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                self.result = BadFile(self.key, self.name, f"unreadable: {_printable(text)}", size, records=records)
                return
            if held is None:
                held = self._chunk(pf.schema_arrow.empty_table())
            yield self._done(totals, held)
            self.result = self._complete(totals, size, records, names)
