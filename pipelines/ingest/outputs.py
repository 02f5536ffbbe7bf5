"""What a published partition writes: the typed validated rows, and the quarantined rows with their reasons."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipelines.core.contracts import MALFORMED_ROW, MISSING_COLUMN, TYPE_MISMATCH, Contract
from pipelines.ingest.rules import describe_failure

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from pipelines.ingest.landing import Parsed


def row_reasons(
    contract: Contract, comb: Parsed, masks: dict[str, np.ndarray], quarantine_ids: list[str], q_idx: np.ndarray
) -> tuple[list[list[str]], list[list[str]]]:
    """Rule ids and reasons of each quarantined row, aligned with ``q_idx``.

    Built for quarantined rows only: a million clean rows cost nothing here.
    """
    import numpy as np

    ids: list[list[str]] = [[] for _ in range(len(q_idx))]
    reasons: list[list[str]] = [[] for _ in range(len(q_idx))]

    def hits(mask: np.ndarray) -> list[int]:
        """Positions in ``q_idx`` of the quarantined rows that ``mask`` flags."""
        return np.flatnonzero(mask[q_idx]).tolist()

    for rid in quarantine_ids:
        if rid == TYPE_MISMATCH:
            for col, fails in comb.type_fail_cols.items():
                for p in hits(fails):
                    if TYPE_MISMATCH not in ids[p]:
                        ids[p].append(TYPE_MISMATCH)
                    reasons[p].append(f"{col} is not a valid {contract.column(col).logical_type}")
        elif rid == MISSING_COLUMN:
            for p in hits(comb.missing_mask):
                ids[p].append(MISSING_COLUMN)
                cols = comb.missing_cols_by_file.get(comb.source_file[q_idx[p]], [])
                reasons[p].append(f"file lacks column(s) {', '.join(cols)}")
        elif rid == MALFORMED_ROW and rid in masks:  # parsed rows whose values span lines
            for p in hits(masks[rid]):
                ids[p].append(rid)
                span = int(comb.row_records[q_idx[p]])
                reasons[p].append(f"its values span {span} lines (an unbalanced quote?)")
        elif rid in masks:  # row rules; unsplittable records carry their own reason
            why = describe_failure(contract.rule(rid))
            for p in hits(masks[rid]):
                ids[p].append(rid)
                reasons[p].append(why)
    return ids, reasons


#: Columns the quarantine table adds to the delivered ones.
QUARANTINE_COLUMNS = ("_source_file", "_source_row", "_records", "_rule_ids", "_reasons", "_raw_line")


def _text_value(v: Any) -> str:
    """One delivered value as text: bytes decoded (or base64 when not UTF-8), nested values as JSON."""
    import base64
    import json

    if isinstance(v, str):
        return v
    if isinstance(v, bytes):
        try:
            return v.decode("utf-8")
        except UnicodeDecodeError:
            return "base64:" + base64.b64encode(v).decode("ascii")
    return json.dumps(v, default=str, ensure_ascii=False)


def as_text(col: Any) -> Any:
    """A delivered column as strings, whatever its Arrow type (lists, structs, maps, binary included)."""
    import pyarrow as pa

    if pa.types.is_string(col.type):
        return col
    flat = not (pa.types.is_nested(col.type) or pa.types.is_binary(col.type) or pa.types.is_large_binary(col.type))
    if flat:
        try:
            return col.cast(pa.string())
        except (pa.ArrowException, TypeError, ValueError):
            pass
    return pa.array([None if v is None else _text_value(v) for v in col.to_pylist()], pa.string())


def delivered_names(column_lists: list[list[str]]) -> dict[str, str]:
    """Every delivered column, in first-seen order, mapped to its quarantine column name.

    A delivered column named like one the quarantine adds keeps its values
    under ``<name>__delivered``.
    """
    out: dict[str, str] = {}
    for names in column_lists:
        for c in names:
            if c not in out:
                target = c
                while target in QUARANTINE_COLUMNS or target in out.values():
                    target += "__delivered"
                out[c] = target
    return out


def _raw_rows(comb: Parsed, rows: np.ndarray, names: dict[str, str]) -> Any:
    """The quarantined rows with every delivered column (``names``) as its original text."""
    import numpy as np
    import pyarrow as pa

    targets = list(names.values())
    pieces = []
    for tbl, off in zip(comb.raw_tables, comb.offsets, strict=True):
        local = rows[(rows >= off) & (rows < off + tbl.num_rows)] - off
        if len(local) == 0:
            continue
        sub = tbl.take(pa.array(local.astype(np.int64)))
        arrays = [as_text(sub.column(c)) if c in sub.column_names else pa.nulls(len(local), pa.string()) for c in names]
        pieces.append(pa.table(arrays, names=targets))
    if not pieces:
        return pa.table({c: pa.array([], pa.string()) for c in targets})
    return pa.concat_tables(pieces)


def typed_table(contract: Contract, frame: pd.DataFrame) -> Any:
    import pyarrow as pa

    from pipelines.ingest.landing import output_schema

    schema = output_schema(contract)
    arrays = []
    for f in schema:
        col = frame[f.name]
        if pa.types.is_string(f.type):
            arrays.append(pa.array(col, type=f.type, from_pandas=True))
        else:
            # Integers are held as float64 while validating; timestamps may be
            # ns. Values were range- and type-checked, so this cast is exact
            # but for sub-microsecond timestamp digits, which are truncated.
            arrays.append(pa.array(col.to_numpy(), from_pandas=True).cast(f.type, safe=False))
    return pa.Table.from_arrays(arrays, schema=schema)


def quarantine_table(
    comb: Parsed, q_idx: Any, ids: list[list[str]], reasons: list[list[str]], names: dict[str, str]
) -> Any:
    """Quarantined rows: every delivered column as text, plus where they came from, how many records, and why."""
    import pyarrow as pa

    raw = _raw_rows(comb, q_idx, names)
    raw = raw.append_column("_source_file", pa.array(comb.source_file[q_idx].tolist(), pa.string()))
    raw = raw.append_column("_source_row", pa.array(comb.source_row[q_idx], pa.int64()))
    raw = raw.append_column("_records", pa.array(comb.row_records[q_idx], pa.int64()))
    raw = raw.append_column("_rule_ids", pa.array(ids, pa.list_(pa.string())))
    raw = raw.append_column("_reasons", pa.array(reasons, pa.list_(pa.string())))
    return raw.append_column("_raw_line", pa.nulls(raw.num_rows, pa.string()))


def malformed_table(malformed: list[tuple[str, int | None, str]], columns: list[str]) -> Any:
    """Records that did not split into the header's columns, as quarantine rows: their text in ``_raw_line``."""
    import pyarrow as pa

    from pipelines.ingest.landing import text_records

    m = len(malformed)
    extra = {c: pa.nulls(m, pa.string()) for c in columns if c not in QUARANTINE_COLUMNS}
    extra["_source_file"] = pa.array([f for f, _, _ in malformed], pa.string())
    extra["_source_row"] = pa.array([line for _, line, _ in malformed], pa.int64())
    extra["_records"] = pa.array([text_records(t) for _, _, t in malformed], pa.int64())
    extra["_rule_ids"] = pa.array([[MALFORMED_ROW]] * m, pa.list_(pa.string()))
    extra["_reasons"] = pa.array([["row does not split into the header's columns"]] * m, pa.list_(pa.string()))
    extra["_raw_line"] = pa.array([t for _, _, t in malformed], pa.string())
    return pa.table(extra).select(columns)
