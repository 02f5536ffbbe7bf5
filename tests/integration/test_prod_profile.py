"""The prod profile end to end: PostgreSQL, CeleryExecutor with two workers, an MLflow server, S3.

``pipelines_ops.prod_stack`` (what ``make up-prod`` runs) starts fresh PostgreSQL
databases, moto's S3 server, an MLflow tracking server (basic auth,
PostgreSQL stores, artifacts proxied to S3) and Airflow's api-server,
scheduler, dag-processor and triggerer plus two named Celery workers, all
on loopback. The test drives the real scheduler through the REST API (with
a token) and the CLI (``airflow backfill create``): ingest 10 seeded days,
train and promote, score 3 days in 4-chunk mapped runs. A large day (40,000
rows in 12 files; 5M in ``make bench-scale``) is read by 4 mapped shard tasks
and scored in 10 chunk tasks, over both workers, into the bytes one process
makes of it. Then it kills the
worker that is scoring a chunk (SIGKILL to its whole process tree: Airflow
runs each task in its own process group) while that chunk is written but
not committed, and
checks that Airflow retries the chunk on the other worker and that the
published partition is byte-identical to the uninterrupted one.

Needs PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379 (skipped
without them, failed under ``CI=true``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import uuid

import pytest

from pipelines.core import catalog
from pipelines_ops import faults
from pipelines_ops.loopback import status
from pipelines_ops.scale_data import large_day_configs

pytestmark = pytest.mark.integration

MODEL = "flights_delay"
DATASET = "flights"
SEEDED = ("2013-01-01", "2013-01-10")
SCORED = ["2013-01-08", "2013-01-09", "2013-01-10"]
KILL_DS = "2013-01-09"
CHUNK_ROWS = 250  # ~950 rows a day: 4 chunks, 4 mapped tasks
#: A large day (``make bench-scale`` runs this module with PROD_LARGE_DAY_ROWS=5000000): about 130 bytes a row,
#: in 12 files, read by 4 shard tasks, scored in chunks of a tenth of the day.
LARGE_DS = "2013-01-11"
LARGE_ROWS = int(os.environ.get("PROD_LARGE_DAY_ROWS", "40000"))
LARGE_SHARD_BYTES = max(1024, LARGE_ROWS * 130 // 4)
LARGE_CHUNK_ROWS = max(100, LARGE_ROWS // 10)
LARGE_BATCH_ROWS = min(200_000, max(2_000, LARGE_ROWS // 40))


@pytest.fixture(scope="module")
def stack(postgres_and_redis, tmp_path_factory):
    import redis

    from pipelines_ops.prod_stack import Stack

    home = tmp_path_factory.mktemp("prod")
    name = f"pipelines_e2e_{uuid.uuid4().hex[:8]}"
    redis.Redis(host="127.0.0.1", port=6379, db=7).flushdb()
    (home / "release").touch()  # fault holds pass straight through until the kill scenario
    cli = [sys.executable, "-m", "pipelines_ops.prod_stack"]
    up = [*cli, "up", "--home", str(home), "--name", name, "--redis-db", "7", "--fresh"]
    # A killed worker's task is noticed after 30 s instead of 5 minutes, and with the ops
    # tooling's fault hook plugged into the scoring step, chunk 2 parks (after its write,
    # before its commit) while the release file is gone.
    up += ["--set", "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT=30"]
    up += ["--set", f"PIPELINES_STEP_HOOK={faults.HOOK}"]
    up += ["--set", "PIPELINES_FAULT_HOLD=chunk_commit:2", "--set", f"PIPELINES_FAULT_RELEASE={home / 'release'}"]
    # Days of more than LARGE_SHARD_BYTES are read by shard tasks (the seeded days, ~120 kB, are not).
    configs = large_day_configs(
        str(home), shard_bytes=LARGE_SHARD_BYTES, max_shards=4, batch_rows=LARGE_BATCH_ROWS, chunk_rows=LARGE_CHUNK_ROWS
    )
    up += [arg for key, value in configs.items() for arg in ("--set", f"{key}={value}")]
    try:
        proc = subprocess.run(up, capture_output=True, text=True, timeout=600)  # what `make up-prod` runs
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "prod stack up (2 Celery workers)" in proc.stdout
        yield Stack.load(home)
    finally:
        subprocess.run([*cli, "drop", "--home", str(home)], capture_output=True, timeout=120)


def _seed(stack) -> None:
    cmd = [sys.executable, "-m", "pipelines", "seed-demo", "--model", MODEL, "--start", SEEDED[0], "--end", SEEDED[1]]
    subprocess.run(cmd, env=stack.env(), check=True, capture_output=True, timeout=300)


def _s3_client(stack):
    import boto3

    env = stack.env()
    return boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name="us-east-1",
    )


def _s3_json(stack, key: str) -> dict:
    return json.loads(_s3_client(stack).get_object(Bucket=stack.bucket, Key=f"prod/{key}")["Body"].read())


def _s3_exists(stack, key: str) -> bool:
    from botocore.exceptions import ClientError

    try:
        _s3_client(stack).head_object(Bucket=stack.bucket, Key=f"prod/{key}")
        return True
    except ClientError:
        return False


def test_authentication_is_on(stack):
    assert status(f"{stack.api_url}/api/v2/dags", timeout=10) == 401
    assert status(f"{stack.mlflow_url}/api/2.0/mlflow/experiments/search?max_results=1", timeout=10) == 401
    with pytest.raises(urllib.error.HTTPError):
        stack.api_token(password="wrong")
    assert stack.api("/api/v2/dags")["total_entries"] >= 4


def test_ingest_train_and_score_on_two_celery_workers(stack, monkeypatch):
    _seed(stack)
    ingest = "ingest_flights"
    stack.api(f"/api/v2/dags/{ingest}", "PATCH", {"is_paused": False})
    stack.airflow("backfill", "create", "--dag-id", ingest, "--from-date", SEEDED[0], "--to-date", SEEDED[1])
    runs = stack.wait_runs(ingest, 10)
    assert sorted(r["state"] for r in runs) == ["success"] * 10
    report = _s3_json(stack, catalog.validation_report(DATASET, SEEDED[1]))["summary"]
    assert report["status"] == "published" and report["validated_rows"] > 800

    retrain = "retrain_flights_delay"
    stack.api(f"/api/v2/dags/{retrain}", "PATCH", {"is_paused": False})
    run = stack.api(f"/api/v2/dags/{retrain}/dagRuns", "POST", {"logical_date": None, "conf": {"end_ds": SEEDED[1]}})
    runs = stack.wait_runs(retrain, 1)
    assert {r["dag_run_id"]: r["state"] for r in runs}[run["dag_run_id"]] == "success"
    for key, value in stack.env().items():
        if key.startswith(("MLFLOW_", "PIPELINES_", "AWS_")):
            monkeypatch.setenv(key, value)
    from pipelines.core.tracking import CHAMPION, client

    champion = client().get_model_version_by_alias(MODEL, CHAMPION)  # from the MLflow server, authenticated
    assert str(champion.version) == "1" and champion.tags["gate_decision"] == "promoted"
    # The tasks worked as their own MLflow account (not the admin), which owns what it made.
    account = stack.mlflow_admin("/api/3.0/mlflow/users/permissions/list?username=pipelines")
    assert account["is_admin"] is False
    granted = json.dumps(account["permissions"])
    assert "MANAGE" in granted and MODEL in granted, granted

    score = "batch_score_flights_delay"
    stack.api(f"/api/v2/dags/{score}", "PATCH", {"is_paused": False})
    conf = json.dumps({"chunk_rows": CHUNK_ROWS})
    window = ["--from-date", SCORED[0], "--to-date", SCORED[-1]]
    stack.airflow("backfill", "create", "--dag-id", score, *window, "--dag-run-conf", conf)
    runs = stack.wait_runs(score, len(SCORED))
    assert sorted(r["state"] for r in runs) == ["success"] * len(SCORED)
    chunks = [ti for ti in stack.task_instances(score) if ti["task_id"] == "score_chunk"]
    assert len(chunks) == 4 * len(SCORED) and {ti["state"] for ti in chunks} == {"success"}
    assert {ti["hostname"] for ti in chunks} == {"worker-a", "worker-b"}  # mapped chunks ran on both workers
    for ds in SCORED:
        manifest = _s3_json(stack, catalog.scores_manifest(MODEL, ds))
        assert manifest["model_version"] == "1" and manifest["chunks"] == 4
        report = _s3_json(stack, catalog.validation_report(DATASET, ds))
        assert manifest["rows"] == report["summary"]["validated_rows"]


def test_racing_promotions_on_the_tracking_server_and_s3_leave_one_champion(stack, monkeypatch):
    """Gates in several threads move the alias at once, through the MLflow server, locked on the S3 root."""
    import threading

    from pipelines.core.champions import history
    from pipelines.core.config import load_project
    from pipelines.core.tracking import CHAMPION, PREVIOUS, alias_version, client
    from pipelines.training.gate import ChampionChanged, _move_aliases, rollback

    for key, value in stack.env().items():
        if key.startswith(("MLFLOW_", "PIPELINES_", "AWS_")):
            monkeypatch.setenv(key, value)
    c = client()
    project = load_project(MODEL)
    champion = str(alias_version(c, MODEL, CHAMPION).version)
    before = len(history(c, MODEL))
    # Copies of the champion (the server takes a registry source and fills in its run and logged model).
    rivals = [str(c.create_model_version(MODEL, f"models:/{MODEL}/{champion}").version) for _ in range(4)]
    results: dict[str, object] = {}

    def promote(version: str) -> None:
        try:
            _move_aliases(client(), project, version, champion, f"race {version}")
            results[version] = "won"
        except ChampionChanged as exc:
            results[version] = exc

    threads = [threading.Thread(target=promote, args=(v,)) for v in rivals]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [v for v, r in results.items() if r == "won"]
    assert len(winners) == 1 and len(results) == len(rivals), results
    assert str(alias_version(c, MODEL, CHAMPION).version) == winners[0]
    assert str(alias_version(c, MODEL, PREVIOUS).version) == champion
    entries = history(c, MODEL)[before:]
    assert [(e["event"], e["champion"], e["previous"]) for e in entries] == [("promote", winners[0], champion)]
    assert c.get_model_version(MODEL, winners[0]).tags["gate_decision"] == "promoted"
    assert not any("gate_decision" in c.get_model_version(MODEL, v).tags for v in rivals if v != winners[0])
    rollback(project, "test: the race winner was a copy")
    assert str(alias_version(c, MODEL, CHAMPION).version) == champion


def test_a_large_day_is_validated_by_shard_tasks_and_scored_on_both_workers_as_one_process_would(
    stack, tmp_path, monkeypatch
):
    """The day's files are read by 4 shard tasks over the two workers; one task decides and publishes; the
    scoring run's chunks also run on both workers. The published validated,
    quarantine and scores files are the bytes one process makes of the same landed files and model version."""
    from pipelines.core.storage import LocalStorage, get_storage
    from pipelines_ops.scale_data import land_large_day

    env = stack.env()
    for key, value in env.items():
        if key.startswith(("MLFLOW_", "PIPELINES_", "AWS_")):
            monkeypatch.setenv(key, value)
    s3 = get_storage()
    landed = land_large_day(s3, LARGE_DS, LARGE_ROWS, files_per_origin=4)
    ingest, score = "ingest_flights", "batch_score_flights_delay"
    scored_before = {r["dag_run_id"] for r in stack.rest.runs(score)}
    run = stack.api(f"/api/v2/dags/{ingest}/dagRuns", "POST", {"logical_date": None, "conf": {"ds": LARGE_DS}})
    runs = {r["dag_run_id"]: r["state"] for r in stack.wait_runs(ingest, 11, 1800)}
    assert runs[run["dag_run_id"]] == "success"
    tis = stack.task_instances(ingest, run["dag_run_id"])
    shards = [ti for ti in tis if ti["task_id"] == "validate_shard"]
    assert len(shards) == 4 and {ti["state"] for ti in shards} == {"success"}
    assert {ti["hostname"] for ti in shards} == {"worker-a", "worker-b"}  # the day's reading spread over both
    report = _s3_json(stack, catalog.validation_report(DATASET, LARGE_DS))["summary"]
    assert report["shards"] == {"count": 4, "by_shard_tasks": 4}
    assert report["status"] == "published" and report["validated_rows"] == sum(landed.values()) == LARGE_ROWS

    # Scoring the day, in chunks of a tenth of it (the config's chunk_rows).
    stack.api(f"/api/v2/dags/{score}/dagRuns", "POST", {"logical_date": None, "conf": {"ds": LARGE_DS}})
    runs = stack.wait_runs(score, len(scored_before) + 1, 1800)
    [scoring] = [r for r in runs if r["dag_run_id"] not in scored_before]
    assert scoring["state"] == "success"
    manifest = _s3_json(stack, catalog.scores_manifest(MODEL, LARGE_DS))
    assert manifest["rows"] == LARGE_ROWS and manifest["chunks"] == 10
    chunks = [ti for ti in stack.task_instances(score, scoring["dag_run_id"]) if ti["task_id"] == "score_chunk"]
    assert len(chunks) == 10 and {ti["hostname"] for ti in chunks} == {"worker-a", "worker-b"}

    # One process, the same landed files and champion: `pipelines validate`, then `pipelines score`.
    one = LocalStorage(str(tmp_path / "one"))
    marker = catalog.landing_file(DATASET, LARGE_DS, "_SUCCESS")
    for key in [k for k in s3.list(catalog.landing_dir(DATASET, LARGE_DS)) if k != marker] + [marker]:
        one.write_bytes(key, s3.read_bytes(key))  # the ready marker last, as upstream writes it
    local = {**env, "PIPELINES_DATA_ROOT": str(tmp_path / "one")}
    one_process = {}
    for args in (["validate", "--dataset", DATASET, "--ds", LARGE_DS], ["score", "--model", MODEL, "--ds", LARGE_DS]):
        cmd = [sys.executable, "-m", "pipelines", *args]
        started = time.monotonic()
        done = subprocess.run(cmd, env=local, capture_output=True, text=True, timeout=3600)
        one_process[args[0]] = round(time.monotonic() - started, 1)
        assert done.returncode == 0, done.stderr[-3000:]
    if os.environ.get("PROD_BENCH_OUT"):  # make bench-scale: the two workers' times beside one process's
        _write_bench(stack, run["dag_run_id"], scoring["dag_run_id"], one_process)
    assert one.read_json(catalog.scores_manifest(MODEL, LARGE_DS))["model_version"] == manifest["model_version"]
    for key in (
        catalog.validated_file(DATASET, LARGE_DS),
        catalog.quarantine_rows(DATASET, LARGE_DS),
        catalog.scores_file(MODEL, LARGE_DS),
    ):
        assert s3.read_bytes(key) == one.read_bytes(key), key


def test_killing_a_worker_mid_chunk_loses_and_duplicates_nothing(stack):
    score = "batch_score_flights_delay"
    before = _s3_json(stack, catalog.scores_manifest(MODEL, KILL_DS))
    release = stack.home / "release"
    release.unlink()  # chunk 2 of KILL_DS now parks after its write, before its commit
    run = stack.api(
        f"/api/v2/dags/{score}/dagRuns",
        "POST",
        {"logical_date": None, "conf": {"ds": KILL_DS, "chunk_rows": CHUNK_ROWS}},
    )
    run_id = run["dag_run_id"]
    deadline = time.monotonic() + 300
    victim = None
    while time.monotonic() < deadline and victim is None:
        for ti in stack.task_instances(score, run_id):
            if ti["task_id"] == "score_chunk" and ti["map_index"] == 2 and ti["state"] == "running" and ti["hostname"]:
                victim = ti["hostname"]
        time.sleep(2)
    assert victim in ("worker-a", "worker-b"), "chunk 2 never started"
    log = stack.home / f"airflow/logs/dag_id={score}/run_id={run_id}/task_id=score_chunk/map_index=2/attempt=1.log"
    while time.monotonic() < deadline and not (log.exists() and "HOLD chunk_commit:2" in log.read_text()):
        time.sleep(1)  # until the chunk is written and not yet committed
    assert "HOLD chunk_commit:2" in log.read_text()
    # The worker, its task supervisors and the task processes (each in its own process group), without warning.
    assert stack.kill(victim, signal.SIGKILL) >= 3
    plan = _s3_json(stack, catalog.scoring_plan(MODEL, KILL_DS))["plan_id"]
    assert _s3_exists(stack, catalog.chunk_data(MODEL, KILL_DS, plan, 2))
    assert not _s3_exists(stack, catalog.chunk_marker(MODEL, KILL_DS, plan, 2))
    release.touch()  # the retry must not park
    survivor = {"worker-a": "worker-b", "worker-b": "worker-a"}[victim]

    state = {r["dag_run_id"]: r["state"] for r in stack.wait_runs(score, len(SCORED) + 1, 420)}[run_id]
    assert state == "success"
    tis = {(ti["task_id"], ti["map_index"]): ti for ti in stack.task_instances(score, run_id)}
    killed = tis[("score_chunk", 2)]
    assert killed["try_number"] >= 2 and killed["hostname"] == survivor  # retried on the other worker
    after = _s3_json(stack, catalog.scores_manifest(MODEL, KILL_DS))
    assert after["plan_id"] != before["plan_id"]  # really a new run
    assert after["output_sha256"] == before["output_sha256"]  # same bytes: nothing lost, nothing twice
    assert after["rows"] == before["rows"] and after["chunks"] == 4


def _seconds(item: dict) -> float:
    import datetime as dt

    start, end = (dt.datetime.fromisoformat(item[k]) for k in ("start_date", "end_date"))
    return round((end - start).total_seconds(), 1)


def _write_bench(stack, ingest_run: str, scoring_run: str, one_process: dict) -> None:
    """The large day's figures for ``make bench-scale``: each run's and task's time and worker."""
    out = {"rows": LARGE_ROWS, "one_process_seconds": one_process, "runs": {}}
    for dag_id, run_id in (("ingest_flights", ingest_run), ("batch_score_flights_delay", scoring_run)):
        run = stack.api(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
        tis = stack.task_instances(dag_id, run_id)
        out["runs"][dag_id] = {
            "seconds": _seconds(run),
            "tasks": [
                {"task": t["task_id"], "map_index": t["map_index"], "worker": t["hostname"], "seconds": _seconds(t)}
                for t in tis
                if t["start_date"] and t["end_date"]
            ],
        }
    with open(os.environ["PROD_BENCH_OUT"], "w", encoding="utf-8") as f:
        json.dump(out, f, indent=2)
