"""Benchmark: batch scoring of one large partition three ways, side by side, at 1M and 5M rows.

Run with ``make bench`` (or ``python tests/bench/bench_score.py [--sizes 1000000,5000000]``).

Setup: January 2013 is seeded and validated in a temporary root and a champion is trained on it.
The large inputs are January's validated rows replicated with unique keys (``flight`` shifted by
10,000 per copy), written as validated partitions the way validation writes them (zstd, row groups
of ``pipelines.ingest.spill.VALIDATED_ROW_GROUP`` rows). Every measurement runs in its own fresh
process (so peak RSS is that process's own, from ``wait4``); import time is paid before the clock
starts and printed apart.

- **limit**: ``xgboost.Booster.inplace_predict`` on the champion's encoded feature matrix, already
  in memory (built before the clock starts): no I/O, no feature code, no encoding.
- **naive peer**: read the whole partition with pandas, ``mlflow.pyfunc`` ``predict``, write one
  Parquet file.
- **ours**: ``score_partition`` (what ``pipelines score`` runs) with checkpointing on: pin, plan,
  score and commit ``scoring.chunk_rows``-row chunks, publish one file atomically, manifest.

- **one day** (about 900 rows, a January day): the ``pipelines score`` process end to end (start,
  imports, pin, plan, model load, score, publish), beside ``python -c "import xgboost, mlflow"``
  alone, alternated, five times each; the medians are compared. Twice: with the local profile's
  SQLite store (MLflow's client then imports SQLAlchemy and Alembic, about a second per process),
  and with an MLflow tracking server over the same store, as the production profile runs (the target).

- **explanations** (``scoring.explanations``, top 3 reasons a row): at 100,000 rows, ours with them
  off, with exact tree SHAP (``pred_contribs``) and with Saabas' approximation (``approx_contribs``),
  side by side; and one day's ``pipelines score`` process with them off and on (tree SHAP), alternated,
  medians. Target: on at most 2x off.

Targets: ours >= 1.5x the peer's rows/s and >= 0.7x the limit's; ours' peak RSS at 5M <= 1.25x its
peak at 1M and <= 0.5x the peer's at 5M; one day's ``pipelines score`` <= 1.5x the two imports.
Results go to ``tests/bench/results/score.json``. A miss is printed, not raised.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "score.json"
MODEL = "flights_delay"
DATASET = "flights"  # the model's dataset
SIZES = (1_000_000, 5_000_000)
BASE_ENV = {"GX_ANALYTICS_ENABLED": "False", "DO_NOT_TRACK": "1", "PIPELINES_CODE_VERSION": "bench"}
MODES = ("limit", "peer", "ours")
EXPLAIN_MODES = ("ours", "tree_shap", "saabas")  # explanations off, exact, approximate
EXPLAIN_ROWS = 100_000
FLIGHT_SHIFT = 10_000
DAILY_DS = "2013-01-15"
DAILY_RUNS = 5


def ds_for(rows: int) -> str:
    """A partition date per size (December, far from the January the champion knows)."""
    return {1_000_000: "2013-12-01", 5_000_000: "2013-12-05", EXPLAIN_ROWS: "2013-12-20"}.get(rows, "2013-12-10")


def setup(root: Path, sizes: list[int]) -> None:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from pipelines.core import catalog
    from pipelines.core.config import load_project
    from pipelines.core.partitions import date_range
    from pipelines.core.storage import LocalStorage
    from pipelines.ingest.spill import VALIDATED_ROW_GROUP
    from pipelines.ingest.validation import validate_partition
    from pipelines.training.gate import run_gate
    from pipelines.training.train import train_challenger
    from pipelines_ops.demo_data import seed_demo

    project = load_project(MODEL)
    storage = LocalStorage(root)
    seed_demo(project, "2013-01-01", "2013-01-31", storage=storage)
    days = list(date_range("2013-01-01", "2013-01-31"))
    for ds in days:
        validate_partition(project, ds, storage=storage)
    train_challenger(project, "2013-01-31", storage=storage)
    assert run_gate(project)["promoted"]
    from pipelines.core.model_cache import load_version
    from pipelines.core.tracking import CHAMPION, client

    champion = client().get_model_version_by_alias(MODEL, CHAMPION)
    load_version(MODEL, champion.version, champion.run_id)  # a worker that has scored with it before
    base = pa.concat_tables([pq.read_table(root / catalog.validated_file(DATASET, ds)) for ds in days]).combine_chunks()
    assert pc.max(base["flight"]).as_py() < FLIGHT_SHIFT
    for rows in sizes:
        path = root / catalog.validated_file(DATASET, ds_for(rows))
        path.parent.mkdir(parents=True, exist_ok=True)
        parts, written, copy = [], 0, 0
        while written < rows:
            part = base.slice(0, min(len(base), rows - written))
            flight = pc.add(part["flight"], pa.scalar(copy * FLIGHT_SHIFT, part["flight"].type))
            parts.append(part.set_column(part.schema.get_field_index("flight"), "flight", flight))
            written += len(part)
            copy += 1
        table = pa.concat_tables(parts)
        pq.write_table(table, path, compression="zstd", row_group_size=VALIDATED_ROW_GROUP)  # as validation does
        del table, parts


# ---- one measurement, in a fresh process


def worker(mode: str, ds: str, out_dir: str) -> dict[str, Any]:
    t_import = time.perf_counter()
    import mlflow.pyfunc
    import mlflow.sklearn
    import numpy as np
    import pandas as pd
    import pyarrow.parquet as pq
    import sklearn  # noqa: F401 - what every mode's model needs, imported before the clock
    import xgboost  # noqa: F401

    from pipelines.core import catalog
    from pipelines.core.config import load_project
    from pipelines.core.storage import get_storage
    from pipelines.core.tracking import CHAMPION, client, configure
    from pipelines.scoring import score_partition

    configure()
    project = load_project(MODEL)
    explanations = {"tree_shap": {"top_k": 3, "method": "tree_shap"}, "saabas": {"top_k": 3, "method": "saabas"}}
    from pipelines.core.config import ExplanationsConfig

    cfg = ExplanationsConfig(**explanations[mode]) if mode in explanations else None
    project = project.model_copy(update={"scoring": project.scoring.model_copy(update={"explanations": cfg})})
    storage = get_storage()
    path = storage.local_path(catalog.validated_file(project.dataset.name, ds))
    version = client().get_model_version_by_alias(MODEL, CHAMPION).version
    uri = f"models:/{MODEL}/{version}"
    imports = time.perf_counter() - t_import
    extra: dict[str, Any] = {}
    if mode == "limit":
        model = mlflow.sklearn.load_model(uri)
        frame = pd.read_parquet(path)
        matrix = np.ascontiguousarray(model[:-1].transform(frame), dtype=np.float32)
        del frame
        booster = model[-1].get_booster()
        t0 = time.perf_counter()
        scores = booster.inplace_predict(matrix)
        seconds = time.perf_counter() - t0
        rows = len(scores)
    elif mode == "peer":
        t0 = time.perf_counter()
        frame = pd.read_parquet(path)
        predictor = mlflow.pyfunc.load_model(uri)
        predicted = np.asarray(predictor.predict(frame))  # this model's pyfunc returns predict_proba
        frame["prediction"] = predicted[:, 1] if predicted.ndim == 2 else predicted
        frame.to_parquet(os.path.join(out_dir, "peer.parquet"), index=False)
        seconds = time.perf_counter() - t0
        rows = len(frame)
    else:
        t0 = time.perf_counter()
        result = score_partition(project, ds, restart=True)
        seconds = time.perf_counter() - t0
        rows = result["rows"]
        published = pq.read_schema(storage.local_path(catalog.scores_file(MODEL, ds)))
        assert pq.read_metadata(storage.local_path(catalog.scores_file(MODEL, ds))).num_rows == rows
        assert ("reason_1" in published.names) == (cfg is not None)
        extra = {"chunks": result["chunks"], "chunk_rows": result["chunk_rows"]}
    return {"mode": mode, "rows": rows, "seconds": seconds, "import_seconds": imports, **extra}


def measure(mode: str, ds: str, out_dir: str) -> dict[str, Any]:
    """Run one measurement in a fresh process; its peak RSS comes from wait4."""
    cmd = [sys.executable, __file__, "--worker", mode, "--ds", ds, "--out", out_dir]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = "", ""
    # Read pipes without waiting on the child (wait4 must reap it to get its rusage).
    import threading

    chunks: dict[str, list[str]] = {"out": [], "err": []}
    readers = [
        threading.Thread(target=lambda: chunks["out"].append(proc.stdout.read())),
        threading.Thread(target=lambda: chunks["err"].append(proc.stderr.read())),
    ]
    for r in readers:
        r.start()
    _, status, usage = os.wait4(proc.pid, 0)
    for r in readers:
        r.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    out, err = "".join(chunks["out"]), "".join(chunks["err"])
    if proc.returncode != 0:
        raise RuntimeError(f"{mode} on {ds} failed ({proc.returncode}):\n{err[-3000:]}")
    result = json.loads(out.strip().splitlines()[-1])
    result["peak_rss_mb"] = round(usage.ru_maxrss / 1024, 1)  # KiB on Linux
    result["rows_per_s"] = round(result["rows"] / result["seconds"])
    return result


def _wall(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    return time.perf_counter() - t0


def _daily_runs(env: dict[str, str], configs: dict[str, Path]) -> dict[str, Any]:
    """Medians of alternated runs: the two imports alone, and ``pipelines score`` with explanations off and on."""
    import statistics

    score = [str(Path(sys.executable).with_name("pipelines")), "score", "--model", MODEL, "--ds", DAILY_DS]
    imports = [sys.executable, "-c", "import xgboost, mlflow"]
    envs = {k: {**env, "PIPELINES_CONFIG_DIR": str(d)} for k, d in configs.items()}
    runs: dict[str, list[float]] = {"score": [], "imports": [], "score_explained": []}
    _wall([*score, "--restart"], envs["off"])  # warm: a worker that has scored before (disk cache, model cache)
    for _ in range(DAILY_RUNS):
        runs["imports"].append(_wall(imports, env))
        runs["score"].append(_wall([*score, "--restart"], envs["off"]))
        runs["score_explained"].append(_wall([*score, "--restart"], envs["on"]))
    med = {k: statistics.median(v) for k, v in runs.items()}
    return {
        "runs": runs,
        "median_seconds": med,
        "ratio": round(med["score"] / med["imports"], 2),
        "explained_vs_off": round(med["score_explained"] / med["score"], 2),
    }


def explanation_configs(tmp: Path) -> dict[str, Path]:
    """Two copies of the configs: the project's explanations off, and on (exact tree SHAP, top 3)."""
    import shutil

    import yaml

    from pipelines.core.settings import PROJECT_ROOT

    out = {}
    for name, value in (("off", None), ("on", {"top_k": 3, "method": "tree_shap"})):
        d = tmp / f"configs-{name}"
        shutil.copytree(PROJECT_ROOT / "configs", d)
        raw = yaml.safe_load((d / f"{MODEL}.yaml").read_text())
        raw["scoring"].pop("explanations", None)
        if value:
            raw["scoring"]["explanations"] = value
        (d / f"{MODEL}.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
        out[name] = d
    return out


def daily(root: Path) -> dict[str, Any]:
    """One day's ``pipelines score`` process beside the two imports alone, alternated (medians), with MLflow
    as each profile has it: the local profile's SQLite store (the client imports SQLAlchemy and Alembic to open
    it, about a second), and a tracking server over the same store, as the production profile has it."""
    from pipelines_ops.loopback import free_ports, status

    configs = explanation_configs(root.parent)
    out = {"sqlite_store": _daily_runs(dict(os.environ), configs)}
    port = free_ports(1)[0]
    store = f"sqlite:///{root}/mlflow/mlflow.db"
    cmd = [str(Path(sys.executable).with_name("mlflow")), "server", "--backend-store-uri", store]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while status(f"http://127.0.0.1:{port}/health") != 200:
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("the MLflow server did not start")
            time.sleep(0.5)
        out["tracking_server"] = _daily_runs({**os.environ, "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}"}, configs)
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", choices=sorted({*MODES, *EXPLAIN_MODES}))
    parser.add_argument("--ds")
    parser.add_argument("--out")
    parser.add_argument("--sizes", default=",".join(str(s) for s in SIZES))
    args = parser.parse_args()
    os.environ.update(BASE_ENV)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    if args.worker:
        print(json.dumps(worker(args.worker, args.ds, args.out)))
        return 0

    sizes = [int(s) for s in args.sizes.split(",")]
    started = time.perf_counter()
    runs: dict[int, dict[str, dict]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-score-") as tmp:
        root = Path(tmp) / "data"
        os.environ["PIPELINES_DATA_ROOT"] = str(root)
        print("setup: seed + validate January, train and promote a champion, build the large partitions ...")
        t0 = time.perf_counter()
        setup(root, [*sizes, EXPLAIN_ROWS])
        print(f"  {time.perf_counter() - t0:.0f} s", flush=True)
        print(f"one day ({DAILY_DS}): `pipelines score` beside `python -c 'import xgboost, mlflow'` ...", flush=True)
        day = daily(root)
        for where, d in day.items():
            print(
                f"  MLflow {where}: pipelines score {d['median_seconds']['score']:.2f} s, imports alone "
                f"{d['median_seconds']['imports']:.2f} s (medians of {DAILY_RUNS}): {d['ratio']}x; "
                f"explanations on {d['median_seconds']['score_explained']:.2f} s: {d['explained_vs_off']}x off",
                flush=True,
            )
        explained: dict[str, dict] = {}
        for mode in EXPLAIN_MODES:
            r = measure(mode, ds_for(EXPLAIN_ROWS), tmp)
            explained[mode] = r
            print(f"  {EXPLAIN_ROWS:>9,} rows  {mode:<9}  {r['seconds']:7.2f} s  {r['rows_per_s']:>10,} rows/s")
        for rows in sizes:
            runs[rows] = {}
            for mode in MODES:
                r = measure(mode, ds_for(rows), tmp)
                runs[rows][mode] = r
                print(
                    f"  {rows:>9,} rows  {mode:<5}  {r['seconds']:7.2f} s  {r['rows_per_s']:>10,} rows/s"
                    f"  peak RSS {r['peak_rss_mb']:>7,.0f} MB  (imports {r['import_seconds']:.1f} s, not timed)",
                    flush=True,
                )

    big, small = max(sizes), min(sizes)
    ours_big, peer_big = runs[big]["ours"], runs[big]["peer"]
    checks = {
        "ours_rss_big_vs_small": round(ours_big["peak_rss_mb"] / runs[small]["ours"]["peak_rss_mb"], 2),
        "ours_rss_vs_peer_big": round(ours_big["peak_rss_mb"] / peer_big["peak_rss_mb"], 2),
        "daily_score_vs_imports": day["tracking_server"]["ratio"],
        "daily_score_vs_imports_sqlite_store": day["sqlite_store"]["ratio"],
        "daily_explained_vs_off": day["tracking_server"]["explained_vs_off"],
        **{
            f"explained_{m}_vs_off_{EXPLAIN_ROWS}": round(explained[m]["seconds"] / explained["ours"]["seconds"], 2)
            for m in EXPLAIN_MODES[1:]
        },
    }
    for rows in sizes:
        r = runs[rows]
        checks[f"ours_vs_peer_rows_per_s_{rows}"] = round(r["ours"]["rows_per_s"] / r["peer"]["rows_per_s"], 2)
        checks[f"ours_vs_limit_rows_per_s_{rows}"] = round(r["ours"]["rows_per_s"] / r["limit"]["rows_per_s"], 2)
    targets = {
        "daily_score_vs_imports": ("<=", 1.5),  # as production runs it: a tracking server
        **{f"ours_vs_peer_rows_per_s_{rows}": (">=", 1.5) for rows in sizes},
        **{f"ours_vs_limit_rows_per_s_{rows}": (">=", 0.7) for rows in sizes},
        "ours_rss_big_vs_small": ("<=", 1.25),
        "ours_rss_vs_peer_big": ("<=", 0.5),
        "daily_explained_vs_off": ("<=", 2.0),
        **{f"explained_{m}_vs_off_{EXPLAIN_ROWS}": ("<=", 2.0) for m in EXPLAIN_MODES[1:]},
    }
    passed = {k: (checks[k] >= t if op == ">=" else checks[k] <= t) for k, (op, t) in targets.items()}
    results = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "runs": {str(k): v for k, v in runs.items()},
        "daily": day,
        "explanations": explained,
        "checks": checks,
        "targets": {k: f"{op} {t}" for k, (op, t) in targets.items()},
        "pass": passed,
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print()
    print("| rows | way | seconds | rows/s | peak RSS MB |")
    print("|---|---|---|---|---|")
    for rows in sizes:
        for mode in MODES:
            r = runs[rows][mode]
            print(f"| {rows:,} | {mode} | {r['seconds']:.2f} | {r['rows_per_s']:,} | {r['peak_rss_mb']:,.0f} |")
    for mode in EXPLAIN_MODES:
        r = explained[mode]
        print(f"| {EXPLAIN_ROWS:,} | {mode} | {r['seconds']:.2f} | {r['rows_per_s']:,} | {r['peak_rss_mb']:,.0f} |")
    print()
    for k, (op, t) in targets.items():
        print(f"{k}: {checks[k]} (target {op} {t}) {'ok' if passed[k] else 'MISS'}")
    print(f"total {results['total_seconds']:.0f} s; results in {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
