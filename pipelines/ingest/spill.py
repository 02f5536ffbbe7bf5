"""A day validated batch by batch: what each batch leaves on local disk, the day's duplicate keys, the outputs.

Validation holds one batch at a time (:mod:`pipelines.ingest.batches`), so
what a batch decided must wait on disk until the day is decided:

1. **Spill** (:class:`Spill`): each batch's rows go to a local Parquet file
   with, per row, its position in the day, every row rule's verdict, the
   typed values and the delivered values.
2. **Duplicates** (:class:`Duplicates`): key uniqueness is a property of the
   whole day. DuckDB groups the spilled typed keys of every batch (out of
   core, its memory capped at :data:`DUCKDB_MEMORY`) and keeps the positions
   of the rows whose key occurs more than once, exactly as pandas'
   ``duplicated(keep=False)`` does over the whole frame (nulls equal each
   other, a key of nulls only is no key). It costs a scan of the key columns
   and, on disk, the spill; nothing in memory grows with the day.
3. **Outputs** (:func:`write_outputs`, a published day only): the spilled
   batches are read back in order and split into validated rows and
   quarantined rows, written to local Parquet files with fixed row groups,
   so the files are the same bytes however the day was batched.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipelines.core.contracts import MALFORMED_ROW, MISSING_COLUMN, Contract

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from pipelines.ingest.landing import Parsed

#: What DuckDB may hold in memory while it finds duplicate keys (it spills the rest to the work folder).
DUCKDB_MEMORY = "512MB"
#: Row groups of the published files: the validated rows (the unit a scoring chunk reads: chunks are made of
#: whole groups, so a chunk task fetches only its own bytes; 50,000 rows divides the default chunk of 100,000),
#: and the quarantine.
VALIDATED_ROW_GROUP = 50_000
QUARANTINE_ROW_GROUP = 256_000

ROW, SOURCE_FILE, SOURCE_ROW, RECORDS, QUARANTINED = "_row", "_file", "_srow", "_rec", "_q"


def typed(column: str) -> str:
    return "t:" + column


def delivered(column: str) -> str:
    return "r:" + column


def verdict(rule_id: str) -> str:
    return "m:" + rule_id


def fails(column: str) -> str:
    return "f:" + column


@dataclass(frozen=True)
class Chunk:
    """One spilled batch: rows ``first_row`` to ``first_row + rows - 1`` of the day.

    A shard numbers its rows from 0; in the day, its batch's ``_row`` column
    plus ``shift`` (the rows of the shards before it) is the row's position.
    """

    path: str
    first_row: int
    rows: int
    shift: int = 0


def unique_rules(contract: Contract) -> list[Any]:
    return [r for r in contract.rules if r.kind == "unique"]


class Spill:
    """Writes each batch's rows, verdicts and values to its own local Parquet file."""

    def __init__(self, folder: str, contract: Contract):
        os.makedirs(folder, exist_ok=True)
        self.folder, self.contract = folder, contract
        self.count = 0

    def add(self, first_row: int, part: Parsed, masks: dict[str, np.ndarray], q: np.ndarray) -> Chunk:
        import numpy as np
        import pyarrow as pa
        import pyarrow.parquet as pq

        from pipelines.ingest.landing import output_schema
        from pipelines.ingest.outputs import typed_table

        n = len(part.frame)
        columns: dict[str, Any] = {
            ROW: pa.array(np.arange(first_row, first_row + n, dtype=np.int64)),
            SOURCE_FILE: pa.array(part.source_file, pa.string()).dictionary_encode(),
            SOURCE_ROW: pa.array(part.source_row, pa.int64()),
            RECORDS: pa.array(part.row_records, pa.int64()),
            QUARANTINED: pa.array(q, pa.bool_()),
        }
        for rid, mask in masks.items():
            columns[verdict(rid)] = pa.array(mask, pa.bool_())
        for col, bad in part.type_fail_cols.items():
            columns[fails(col)] = pa.array(bad, pa.bool_())
        values = typed_table(self.contract, part.frame)
        schema = output_schema(self.contract)
        for f in schema:
            columns[typed(f.name)] = values.column(f.name)
        for name in _raw_names(part):
            pieces = [
                tbl.column(name) if name in tbl.column_names else pa.nulls(tbl.num_rows, pa.string())
                for tbl in part.raw_tables
            ]
            columns[delivered(name)] = _stack(pieces)
        path = os.path.join(self.folder, f"chunk-{self.count:06d}.parquet")
        self.count += 1
        # Nullable throughout: a required column may hold nulls in rows that will be quarantined.
        table = pa.table(columns)
        pq.write_table(table, path, compression="lz4", row_group_size=max(n, 1))
        return Chunk(path, first_row, n)


def _raw_names(part: Parsed) -> list[str]:
    out: dict[str, None] = {}
    for tbl in part.raw_tables:
        out.update(dict.fromkeys(tbl.column_names))
    return list(out)


def _stack(pieces: list[Any]) -> Any:
    """Pieces of one delivered column as one text column (what the quarantine shows of a value, whatever its type)."""
    import pyarrow as pa

    from pipelines.ingest.outputs import as_text

    chunks = []
    for p in pieces:
        text = as_text(p)
        chunks.extend(text.chunks if isinstance(text, pa.ChunkedArray) else [text])
    return pa.chunked_array(chunks, type=pa.string())


def _sql_list(paths: list[str]) -> str:
    return "[" + ", ".join("'" + p.replace("'", "''") + "'" for p in paths) + "]"


def _positioned(chunks: list[Chunk], columns: list[str]) -> str:
    """A DuckDB table expression over the spilled batches, only ``columns`` (matched by name: files' delivered
    columns differ), where ``_row`` is each row's position in the day."""
    from pipelines.core.expressions import quote_identifier as q

    groups: dict[int, list[str]] = {}
    for c in chunks:
        groups.setdefault(c.shift, []).append(c.path)
    rest = ", ".join(q(c) for c in columns if c != ROW)
    selects = [
        f"SELECT {ROW} + {int(shift)} AS {ROW}, {rest} "  # noqa: S608 - our own files and columns
        f"FROM read_parquet({_sql_list(paths)}, union_by_name = true)"
        for shift, paths in groups.items()
    ]
    return "(" + " UNION ALL ".join(selects) + ")"


class Duplicates:
    """The day's rows whose key repeats, per ``unique`` rule, found by DuckDB over every spilled batch."""

    def __init__(self, contract: Contract, chunks: list[Chunk], folder: str):
        self.counts: dict[str, int] = {}
        self.rules = unique_rules(contract)
        self.con = None
        self.files = [c.path for c in chunks if c.rows]
        keys = {typed(c) for r in self.rules for c in r.columns}
        self.source = _positioned([c for c in chunks if c.rows], [ROW, RECORDS, QUARANTINED, *sorted(keys)])
        if not self.rules:
            return
        if not self.files:
            self.counts = {r.id: 0 for r in self.rules}
            return
        import duckdb

        from pipelines.core.expressions import quote_identifier as q

        os.makedirs(os.path.join(folder, "duckdb"), exist_ok=True)
        self.con = duckdb.connect(
            config={"memory_limit": DUCKDB_MEMORY, "temp_directory": os.path.join(folder, "duckdb"), "threads": 2}
        )
        source = self.source
        for i, rule in enumerate(self.rules):
            cols = [q(typed(c)) for c in rule.columns]
            keyed = " OR ".join(f"{c} IS NOT NULL" for c in cols)
            match = " AND ".join(f"s.{c} IS NOT DISTINCT FROM k.{c}" for c in cols)
            self.con.execute(
                f"CREATE TABLE dup{i} AS "  # noqa: S608
                f"WITH s AS (SELECT {ROW}, {', '.join(cols)} FROM {source}), "
                f"k AS (SELECT {', '.join(cols)} FROM s WHERE {keyed} GROUP BY ALL HAVING count(*) > 1) "
                f"SELECT {ROW} FROM s SEMI JOIN k ON {match} ORDER BY {ROW}"
            )
            found = self.con.execute(f"SELECT count(*) FROM dup{i}").fetchone()  # noqa: S608 - our table
            self.counts[rule.id] = int(found[0])

    def quarantined(self, rule_ids: list[str]) -> tuple[int, int]:
        """Rows (and their records) that only a duplicate key of these rules quarantines."""
        tables = [f"SELECT {ROW} FROM dup{i}" for i, r in enumerate(self.rules) if r.id in rule_ids]  # noqa: S608
        if not tables or self.con is None:
            return 0, 0
        rows, records = self.con.execute(
            f"SELECT count(*), coalesce(sum({RECORDS}), 0) FROM {self.source} "  # noqa: S608
            f"WHERE NOT {QUARANTINED} AND {ROW} IN ({' UNION '.join(tables)})"
        ).fetchone()
        return int(rows), int(records)

    def masks(self, chunk: Chunk) -> dict[str, np.ndarray]:
        """Each ``unique`` rule's mask over one chunk's rows."""
        import numpy as np

        out = {}
        for i, rule in enumerate(self.rules):
            mask = np.zeros(chunk.rows, dtype=bool)
            if self.con is not None and self.counts.get(rule.id):
                hit = self.con.execute(
                    f"SELECT {ROW} FROM dup{i} WHERE {ROW} >= ? AND {ROW} < ?",  # noqa: S608
                    [chunk.first_row, chunk.first_row + chunk.rows],
                ).fetchnumpy()[ROW]
                mask[np.asarray(hit, dtype=np.int64) - chunk.first_row] = True
            out[rule.id] = mask
        return out

    def close(self) -> None:
        if self.con is not None:
            self.con.close()
            self.con = None


class RowGroupWriter:
    """Appends tables to one Parquet file in row groups of a fixed size, whatever sizes the pieces come in."""

    def __init__(self, path: str, schema: pa.Schema, row_group_size: int):
        self.path, self.schema, self.size = path, schema, row_group_size
        self.pending: list[pa.Table] = []
        self.buffered = 0
        self.writer: Any = None
        self.rows = 0

    def write(self, piece: pa.Table) -> None:
        import pyarrow as pa

        if not piece.num_rows:
            return
        self.pending.append(piece)
        self.buffered += piece.num_rows
        self.rows += piece.num_rows
        if self.buffered >= self.size:
            table = pa.concat_tables(self.pending)
            full = (table.num_rows // self.size) * self.size
            self._flush(table.slice(0, full))
            rest = table.slice(full)
            self.pending, self.buffered = ([rest] if rest.num_rows else []), rest.num_rows

    def _flush(self, table: pa.Table) -> None:
        import pyarrow.parquet as pq

        if self.writer is None:
            self.writer = pq.ParquetWriter(self.path, self.schema, compression="zstd")
        # One chunk per column: the writer starts a data page at every chunk, so pieces would show in the bytes.
        self.writer.write_table(table.combine_chunks(), row_group_size=self.size)

    def close(self) -> None:
        import pyarrow as pa

        if self.pending or self.writer is None:
            table = pa.concat_tables(self.pending) if self.pending else self.schema.empty_table()
            self._flush(table)
        self.writer.close()


def quarantine_schema(names: dict[str, str]) -> pa.Schema:
    """The quarantine's columns: every delivered column as text, then where each row came from and why."""
    import pyarrow as pa

    return pa.schema(
        [(t, pa.string()) for t in names.values()]
        + [
            ("_source_file", pa.string()),
            ("_source_row", pa.int64()),
            ("_records", pa.int64()),
            ("_rule_ids", pa.list_(pa.string())),
            ("_reasons", pa.list_(pa.string())),
            ("_raw_line", pa.string()),
        ]
    )


def write_outputs(
    contract: Contract,
    chunks: list[Chunk],
    dups: Duplicates,
    quarantined: list[str],
    names: dict[str, str],
    missing_by_file: dict[str, list[str]],
    malformed: list[tuple[str, int | None, str]],
    folder: str,
) -> tuple[str, str, int, int, int]:
    """Split the spilled rows into the validated file and the quarantine file, batch by batch.

    Args:
        quarantined: the rules whose failure quarantines their rows (those that failed).
        names: every delivered column of the day, mapped to its quarantine column.
        malformed: the unsplittable records to quarantine after the rows (none unless their rule quarantines).

    Returns:
        ``(validated path, quarantine path, validated rows, quarantined rows, quarantined records)``.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipelines.ingest.landing import Parsed, output_schema
    from pipelines.ingest.outputs import malformed_table, quarantine_table, row_reasons

    schema = output_schema(contract)
    q_schema = quarantine_schema(names)
    v_path, q_path = os.path.join(folder, "validated.parquet"), os.path.join(folder, "quarantine.parquet")
    v_out = RowGroupWriter(v_path, schema, VALIDATED_ROW_GROUP)
    q_out = RowGroupWriter(q_path, q_schema, QUARANTINE_ROW_GROUP)
    q_records = 0
    unique_ids = {r.id for r in dups.rules}
    for chunk in chunks:
        if not chunk.rows:
            continue
        t = pq.read_table(chunk.path)
        masks = {c[2:]: t.column(c).to_numpy(zero_copy_only=False) for c in t.column_names if c.startswith("m:")}
        masks.update(dups.masks(chunk))
        q = t.column(QUARANTINED).to_numpy(zero_copy_only=False).copy()
        for rid in quarantined:
            if rid in unique_ids:
                q |= masks[rid]
        keep = np.flatnonzero(~q)
        v_out.write(pa.Table.from_arrays([t.column(typed(f.name)).take(keep) for f in schema], schema=schema))
        q_idx = np.flatnonzero(q)
        if not len(q_idx):
            continue
        raw_names = [c for c in t.column_names if c.startswith("r:")]
        raw = t.select(raw_names).rename_columns([c[2:] for c in raw_names])
        records = t.column(RECORDS).to_numpy()
        comb = Parsed(
            frame=None,
            raw_tables=[raw],
            offsets=[0],
            source_file=t.column(SOURCE_FILE).cast(pa.string()).to_numpy(zero_copy_only=False),
            source_row=t.column(SOURCE_ROW).to_numpy(),
            type_fail_cols={c: t.column(fails(c)).to_numpy(zero_copy_only=False) for c in contract.column_names},
            missing_mask=masks[MISSING_COLUMN],
            missing_cols_by_file=missing_by_file,
            malformed=[],
            extra_cols_by_file={},
            row_records=records,
            multiline_mask=masks[MALFORMED_ROW],
        )
        ids, reasons = row_reasons(contract, comb, masks, quarantined, q_idx)
        piece = quarantine_table(comb, q_idx, ids, reasons, names)
        q_out.write(piece.select(q_schema.names).cast(q_schema))
        q_records += int(records[q_idx].sum())
    if malformed:
        piece = malformed_table(malformed, q_schema.names)
        q_out.write(piece.cast(q_schema))
        q_records += int(np.asarray(piece.column("_records")).sum())
    v_out.close()
    q_out.close()
    return v_path, q_path, v_out.rows, q_out.rows, q_records
