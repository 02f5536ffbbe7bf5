"""Benchmark: validation of large days, side by side with Great Expectations alone, in bounded memory.

Run with ``make bench-scale`` (``python tests/bench/bench_scale.py [ROWS ...]``, default 1M 5M 20M rows).
For each size a day of that many rows is landed with :func:`pipelines_ops.scale_data.land_large_day`
(the real 2013 flights replicated with unique keys, one CSV per origin airport), then validated in a fresh
process per side, one after the other:

- *ours*: ``validate_partition`` end to end (streamed in batches of the dataset's ``batch_rows``, GX per
  batch, exact day-wide key uniqueness through DuckDB, both outputs written and uploaded);
- *peer*: what a user of Great Expectations alone would write: ``pd.read_csv`` of every file, concat, one
  GX validation of the contract's suite on the whole frame. It needs the whole day in memory, so it runs
  only up to ``PEER_MAX_ROWS`` (above that this machine's 24 GB would not hold it; the row is marked so).

Reported per size: seconds, rows/s and peak RSS (the child's ``ru_maxrss``). Targets: ours' peak RSS at
the largest size at most 1.3x its RSS at the smallest; ours at least 0.9x the peer's rows/s where the peer
ran. A miss is printed, not raised. Results go to ``tests/bench/results/scale.json``.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
RESULTS = HERE / "results" / "scale.json"
SIZES = (1_000_000, 5_000_000, 20_000_000)
PEER_MAX_ROWS = 5_000_000
DS = "2013-06-15"
RSS_TARGET = 1.3
THROUGHPUT_TARGET = 0.9


def _env(root: str) -> None:
    os.environ["PIPELINES_DATA_ROOT"] = root
    os.environ["GX_ANALYTICS_ENABLED"] = "False"
    os.environ.pop("PIPELINES_PROFILE", None)


def ours(root: str, contracts: str, rows: int) -> dict[str, Any]:
    _env(root)
    from pipelines.core.config import load_project
    from pipelines.ingest.validation import validate_partition
    from pipelines_ops.scale_data import widened_contract

    contract = widened_contract(contracts, rows * 2)
    import great_expectations  # noqa: F401 - imported before the clock starts, as the peer's is
    import pyarrow.csv  # noqa: F401

    t0 = time.perf_counter()
    summary = validate_partition(load_project("flights_delay"), DS, contract=contract)
    seconds = time.perf_counter() - t0
    assert summary["landed_rows"] == rows and summary["validated_rows"] == rows, summary
    return {"seconds": seconds, "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


def peer(root: str, contracts: str, rows: int) -> dict[str, Any]:
    _env(root)
    import great_expectations as gx
    import pandas as pd
    from great_expectations.data_context.types.base import ProgressBarsConfig

    from pipelines.core import catalog
    from pipelines.ingest.rules import build_expectations
    from pipelines_ops.scale_data import widened_contract

    contract = widened_contract(contracts, rows * 2)
    t0 = time.perf_counter()
    folder = Path(root, catalog.landing_dir("flights", DS))
    frame = pd.concat([pd.read_csv(p) for p in sorted(folder.glob("*.csv"))], ignore_index=True)
    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    asset = ctx.data_sources.add_pandas(name="landed").add_dataframe_asset(name=contract.name)
    batch_def = asset.add_batch_definition_whole_dataframe(name="day")
    suite = ctx.suites.add(gx.ExpectationSuite(name=contract.id))
    for exp in build_expectations(contract, DS):
        suite.add_expectation(exp)
    batch_def.get_batch(batch_parameters={"dataframe": frame}).validate(suite)
    seconds = time.perf_counter() - t0
    assert len(frame) == rows
    return {"seconds": seconds, "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


def land(root: str, rows: int) -> float:
    _env(root)
    from pipelines.core.storage import get_storage
    from pipelines_ops.scale_data import land_large_day

    t0 = time.perf_counter()
    land_large_day(get_storage(), DS, rows)
    return time.perf_counter() - t0


def in_child(fn: Any, *args: Any) -> Any:
    """Run in a fresh spawned process: its peak RSS is its own."""
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def main(sizes: tuple[int, ...]) -> int:
    out: dict[str, Any] = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "sizes": []}
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        root, contracts = os.path.join(tmp, "data"), os.path.join(tmp, "contracts")
        os.makedirs(contracts)
        for rows in sizes:
            landed = in_child(land, root, rows)
            print(f"{rows:,} rows landed in {landed:.1f} s", flush=True)
            row: dict[str, Any] = {"rows": rows, "ours": in_child(ours, root, contracts, rows)}
            if rows <= PEER_MAX_ROWS:
                row["peer"] = in_child(peer, root, contracts, rows)
            for side in ("ours", "peer"):
                if side in row:
                    r = row[side]
                    r["rows_per_second"] = rows / r["seconds"]
                    print(
                        f"  {side}: {r['seconds']:.1f} s, {r['rows_per_second']:,.0f} rows/s, "
                        f"peak RSS {r['peak_rss_bytes'] / 2**20:,.0f} MiB",
                        flush=True,
                    )
            if "peer" in row:
                row["ratio"] = row["ours"]["rows_per_second"] / row["peer"]["rows_per_second"]
                print(f"  ours/peer rows/s: {row['ratio']:.2f}x (target >= {THROUGHPUT_TARGET}x)", flush=True)
            else:
                print(f"  peer not run above {PEER_MAX_ROWS:,} rows: the whole day in pandas would not fit")
            out["sizes"].append(row)
    rss = [r["ours"]["peak_rss_bytes"] for r in out["sizes"]]
    out["rss_ratio_largest_to_smallest"] = rss[-1] / rss[0]
    print(
        f"ours' peak RSS, largest / smallest day: {out['rss_ratio_largest_to_smallest']:.2f}x (target <= {RSS_TARGET}x)"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(tuple(int(a) for a in sys.argv[1:]) or SIZES))
