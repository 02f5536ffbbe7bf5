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
ran.

Then **scoring on the S3 protocol server** (moto, on loopback): a champion is trained on January in a local
root; a ``SCORE_ROWS``-row day is landed on S3 and validated there, planned in chunks of ``SCORE_CHUNK_ROWS``
rows, and every chunk is scored by its own fresh process, as Airflow's mapped tasks do. Per chunk task:
requests its storage client sent, bytes its GETs returned, against the compressed size of the row groups
its rows are in (its share), and peak RSS. Targets: bytes at most 1.2x the share; requests the same for
every task (they do not grow with the number of chunks).

Then **training on a ``TRAIN_ROWS``-row window** (``BENCH_SCALE_TRAINING=1``): January's validated rows
replicated with unique keys into the 60 days of the window ending ``TRAIN_END`` (written as validation
writes them), then ``train_challenger`` in a fresh process: seconds, peak RSS, and the method (the seeded
sample of ``training.sample.max_rows`` rows per part of the window).

Then **a ``PROD_ROWS``-row day on the prod stack** (``BENCH_SCALE_PROD=1``): the prod profile's test
``test_a_large_day_is_validated_by_shard_tasks_and_scored_on_both_workers_as_one_process_would`` at that size
(PostgreSQL, two Celery workers, MLflow server, S3 server): the day is read by 4 shard tasks and scored in 10
chunk tasks over both workers, and its published bytes are checked against one process's. Reported: each
run's and task's seconds and worker, beside ``pipelines validate`` / ``pipelines score`` in one process.

A miss is printed, not raised. Results go to ``tests/bench/results/scale.json``.
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
SCORE_ROWS = 5_000_000
SCORE_CHUNK_ROWS = 100_000
SCORE_DS = "2013-06-20"
BYTES_TARGET = 1.2
TRAIN_ROWS = 20_000_000
PROD_ROWS = int(os.environ.get("BENCH_SCALE_PROD_ROWS", "5000000"))
TRAIN_END = "2013-08-31"
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


# ---- scoring on S3


def train_champion(root: str) -> None:
    """January seeded, validated and trained in a local root; the champion alias set by the gate."""
    _env(root)
    from pipelines.core.config import load_project
    from pipelines.core.partitions import date_range
    from pipelines.core.storage import get_storage
    from pipelines.ingest.validation import validate_partition
    from pipelines.training.gate import run_gate
    from pipelines.training.train import train_challenger
    from pipelines_ops.demo_data import seed_demo

    project, storage = load_project("flights_delay"), get_storage()
    seed_demo(project, "2013-01-01", "2013-01-31", storage=storage)
    for ds in date_range("2013-01-01", "2013-01-31"):
        validate_partition(project, ds, storage=storage)
    train_challenger(project, "2013-01-31", storage=storage)
    assert run_gate(project)["promoted"]


def s3_env(endpoint: str, local_root: str) -> dict[str, str]:
    return {
        "PIPELINES_DATA_ROOT": "s3://bench/root",
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        "MLFLOW_TRACKING_URI": f"sqlite:///{local_root}/mlflow/mlflow.db",
        "PIPELINES_MLFLOW_ARTIFACT_ROOT": f"{local_root}/mlflow/artifacts",
        "GX_ANALYTICS_ENABLED": "False",
        "NO_PROXY": "127.0.0.1",
    }


def s3_step(env: dict[str, str], step: str, *args: Any) -> dict[str, Any]:
    """In a fresh process on the S3 root: land, validate, plan, score one chunk or publish."""
    os.environ.update(env)
    os.environ.pop("PIPELINES_PROFILE", None)
    from pipelines.core.config import load_project
    from pipelines.core.storage import get_storage

    project, storage = load_project("flights_delay"), get_storage()
    # Throughput of the pipeline itself: reasons beside the scores off (make bench measures their cost).
    project = project.model_copy(update={"scoring": project.scoring.model_copy(update={"explanations": None})})
    traffic = {"requests": 0, "bytes": 0}

    def call(**kwargs: Any) -> None:
        traffic["requests"] += 1

    def got(http_response: Any, **kwargs: Any) -> None:
        traffic["bytes"] += int(http_response.headers.get("content-length", 0))

    t0 = time.perf_counter()
    out: dict[str, Any] = {}
    if step == "land":
        storage.client.create_bucket(Bucket="bench")
        from pipelines_ops.scale_data import land_large_day

        land_large_day(storage, SCORE_DS, SCORE_ROWS)
    elif step == "validate":
        import great_expectations  # noqa: F401 - its import is no part of the step's cost here

        from pipelines.ingest.validation import validate_partition
        from pipelines_ops.scale_data import widened_contract

        t0 = time.perf_counter()
        s = validate_partition(project, SCORE_DS, contract=widened_contract(args[0], SCORE_ROWS * 2))
        out = {"validated_rows": s["validated_rows"]}
    elif step == "plan":
        from pipelines.scoring.plan import plan_run

        plan = plan_run(project, SCORE_DS, chunk_rows=SCORE_CHUNK_ROWS, restart=True)
        out = {"plan_id": plan["plan_id"], "chunks": plan["chunks"], "key": plan["input"]["key"]}
    elif step == "chunk":
        import mlflow.sklearn  # noqa: F401 - imports paid before the clock, as the task's fixed cost

        from pipelines.scoring.chunks import score_chunks

        storage.client.meta.events.register("before-call.s3", call)
        storage.client.meta.events.register("after-call.s3.GetObject", got)
        t0 = time.perf_counter()
        out = score_chunks(project, SCORE_DS, args[0], [args[1]], storage=storage)
    elif step == "publish":
        from pipelines.scoring.publication import publish

        out = {"rows": publish(project, SCORE_DS, args[0], storage)["rows"]}
    out.update(traffic)
    out["seconds"] = time.perf_counter() - t0
    out["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return out


def row_group_shares(env: dict[str, str], key: str, chunks: list[dict[str, int]]) -> list[int]:
    """Compressed bytes of the row groups each chunk's rows are in."""
    import boto3
    import pyarrow.parquet as pq

    client = boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        region_name="us-east-1",
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )
    with tempfile.NamedTemporaryFile(suffix=".parquet") as tmp:
        client.download_file("bench", f"root/{key}", tmp.name)
        meta = pq.ParquetFile(tmp.name).metadata
    groups, start = [], 0
    for g in range(meta.num_row_groups):
        rg = meta.row_group(g)
        size = sum(rg.column(c).total_compressed_size for c in range(meta.num_columns))
        groups.append((start, start + rg.num_rows, size))
        start += rg.num_rows
    return [sum(size for lo, hi, size in groups if lo < c["start"] + c["rows"] and hi > c["start"]) for c in chunks]


def score_on_s3(tmp: str) -> dict[str, Any]:
    import subprocess

    from pipelines_ops.loopback import free_ports

    local_root = os.path.join(tmp, "local")
    in_child(train_champion, local_root)
    print("champion trained on January", flush=True)
    (port,) = free_ports(1)
    exe = str(Path(sys.executable).with_name("moto_server"))
    server = subprocess.Popen(
        [exe, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        env = s3_env(f"http://127.0.0.1:{port}", local_root)
        deadline = time.monotonic() + 30
        while True:
            try:
                in_child(s3_step, env, "land")
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        validated = in_child(s3_step, env, "validate", os.path.join(tmp, "contracts"))
        print(f"{SCORE_ROWS:,} rows validated on S3 in {validated['seconds']:.1f} s", flush=True)
        plan = in_child(s3_step, env, "plan")
        shares = row_group_shares(env, plan["key"], plan["chunks"])
        tasks = []
        for c, share in zip(plan["chunks"], shares, strict=True):
            t = in_child(s3_step, env, "chunk", plan["plan_id"], c["index"])
            t.update(index=c["index"], share_bytes=share, ratio=t["bytes"] / share)
            tasks.append(t)
        published = in_child(s3_step, env, "publish", plan["plan_id"])
    finally:
        server.terminate()
        server.wait(timeout=10)
    requests = sorted({t["requests"] for t in tasks})
    out = {
        "rows": SCORE_ROWS,
        "chunks": len(tasks),
        "validate_seconds": validated["seconds"],
        "validate_peak_rss_bytes": validated["peak_rss_bytes"],
        "requests_per_task": requests,
        "max_bytes_to_share": max(t["ratio"] for t in tasks),
        "max_task_peak_rss_bytes": max(t["peak_rss_bytes"] for t in tasks),
        "median_task_seconds": sorted(t["seconds"] for t in tasks)[len(tasks) // 2],
        "published_rows": published["rows"],
        "tasks": tasks,
    }
    print(
        f"scoring on S3: {len(tasks)} chunk tasks; requests per task {requests}; bytes fetched / share at most "
        f"{out['max_bytes_to_share']:.3f}x (target <= {BYTES_TARGET}x); peak RSS per task at most "
        f"{out['max_task_peak_rss_bytes'] / 2**20:,.0f} MiB; {published['rows']:,} rows published",
        flush=True,
    )
    return out


# ---- training on a large window


def write_window(root: str) -> int:
    """January validated, then replicated into every day of the window ending ``TRAIN_END``."""
    _env(root)
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from pipelines.core import catalog
    from pipelines.core.config import load_project
    from pipelines.core.partitions import date_range
    from pipelines.core.storage import get_storage
    from pipelines.ingest.spill import VALIDATED_ROW_GROUP
    from pipelines.ingest.validation import validate_partition
    from pipelines.training.dataset import window
    from pipelines_ops.demo_data import seed_demo

    project, storage = load_project("flights_delay"), get_storage()
    seed_demo(project, "2013-01-01", "2013-01-31", storage=storage)
    for ds in date_range("2013-01-01", "2013-01-31"):
        validate_partition(project, ds, storage=storage)
    jan = [catalog.validated_file("flights", ds) for ds in date_range("2013-01-01", "2013-01-31")]
    base = pa.concat_tables([pq.read_table(storage.local_path(k)) for k in jan]).combine_chunks()
    days = [d for part in window(project, TRAIN_END).values() for d in part]
    per_day, written = TRAIN_ROWS // len(days), 0
    for i, ds in enumerate(days):
        parts, copy = [], 0
        while sum(p.num_rows for p in parts) < per_day:
            part = base.slice(0, min(base.num_rows, per_day - sum(p.num_rows for p in parts)))
            shift = pa.scalar((i * 1000 + copy) * 10_000, part["flight"].type)
            parts.append(
                part.set_column(part.schema.get_field_index("flight"), "flight", pc.add(part["flight"], shift))
            )
            copy += 1
        path = storage.local_path(catalog.validated_file("flights", ds))
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.concat_tables(parts), path, compression="zstd", row_group_size=VALIDATED_ROW_GROUP)
        written += per_day
    return written


def train_window(root: str) -> dict[str, Any]:
    _env(root)
    import mlflow.sklearn  # noqa: F401 - imports before the clock

    from pipelines.core.config import load_project
    from pipelines.training.train import train_challenger

    t0 = time.perf_counter()
    r = train_challenger(load_project("flights_delay"), TRAIN_END, force=True)
    seconds = time.perf_counter() - t0
    from pipelines.core import catalog
    from pipelines.core.storage import get_storage

    record = get_storage().read_json(catalog.training_set_record("flights_delay", TRAIN_END))
    return {
        "seconds": seconds,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "sample": record["sample"],
        "primary_metric": r["metrics"].get("roc_auc"),
    }


def train_on_large_window(tmp: str) -> dict[str, Any]:
    root = os.path.join(tmp, "window")
    rows = in_child(write_window, root)
    print(f"a {rows:,}-row window written", flush=True)
    out = in_child(train_window, root)
    s = out["sample"]
    print(
        f"training on {rows:,} rows: {out['seconds']:.1f} s, peak RSS {out['peak_rss_bytes'] / 2**20:,.0f} MiB; "
        f"method: seeded sample of {s['train']['rows']:,} of {s['train']['rows_in_window']:,} train rows "
        f"(rate {s['train']['rate']:.4f}) and {s['holdout']['rows']:,} of {s['holdout']['rows_in_window']:,} "
        f"holdout rows; holdout roc_auc {out['primary_metric']:.4f}",
        flush=True,
    )
    return {"rows": rows, **out}


def prod_two_workers(tmp: str) -> dict[str, Any]:
    """The prod stack's test of a large day (``PROD_ROWS`` rows) on two Celery workers, with its figures."""
    import subprocess

    path = os.path.join(tmp, "prod.json")
    env = {**os.environ, "PROD_LARGE_DAY_ROWS": str(PROD_ROWS), "PROD_BENCH_OUT": path}
    test = "tests/integration/test_prod_profile.py"
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test, "-k", "ingest_train or large_day"]
    print(f"prod stack, two Celery workers, a {PROD_ROWS:,}-row day: {' '.join(cmd[2:])}", flush=True)
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=4 * 3600)
    print("  " + (done.stdout.strip().splitlines() or ["(no output)"])[-1], flush=True)
    if done.returncode != 0 or not os.path.exists(path):
        print(done.stdout[-5000:], done.stderr[-3000:], flush=True)
        return {"rows": PROD_ROWS, "passed": False}
    with open(path, encoding="utf-8") as f:
        out = json.load(f)
    out["passed"] = True
    one = out["one_process_seconds"]
    for dag_id, side in (("ingest_flights", "validate"), ("batch_score_flights_delay", "score")):
        r = out["runs"][dag_id]
        workers: dict[str, int] = {}
        for t in r["tasks"]:
            workers[t["worker"]] = workers.get(t["worker"], 0) + 1
        r["one_process_seconds"] = one[side]
        r["speedup"] = one[side] / r["seconds"]
        spread = ", ".join(f"{w}: {n} tasks" for w, n in sorted(workers.items()))
        print(
            f"  {dag_id}: {r['seconds']:.0f} s on two workers ({spread}); "
            f"one process: {one[side]:.0f} s; speedup {r['speedup']:.2f}x",
            flush=True,
        )
        for t in r["tasks"]:
            print(f"    {t['task']}[{t['map_index']}] {t['worker']}: {t['seconds']:.1f} s", flush=True)
    return out


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
        if os.environ.get("BENCH_SCALE_SCORING", "1") != "0":
            out["scoring_s3"] = score_on_s3(tmp)
        if os.environ.get("BENCH_SCALE_TRAINING", "1") != "0":
            out["training"] = train_on_large_window(tmp)
        if os.environ.get("BENCH_SCALE_PROD", "1") != "0":
            out["prod_two_workers"] = prod_two_workers(tmp)
    if out["sizes"]:
        rss = [r["ours"]["peak_rss_bytes"] for r in out["sizes"]]
        ratio = out["rss_ratio_largest_to_smallest"] = rss[-1] / rss[0]
        print(f"ours' peak RSS, largest / smallest day: {ratio:.2f}x (target <= {RSS_TARGET}x)")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    # Sizes as arguments; "0" alone validates no large day (only the scoring part).
    args = tuple(int(a) for a in sys.argv[1:])
    sys.exit(main(tuple(a for a in args if a) if args else SIZES))
