"""The prod profile end to end: PostgreSQL, CeleryExecutor with two workers, an MLflow server, S3.

``pipelines_ops.prod_stack`` (what ``make up-prod`` runs) starts fresh PostgreSQL
databases, moto's S3 server, an MLflow tracking server (basic auth,
PostgreSQL stores, artifacts proxied to S3) and Airflow's api-server,
scheduler, dag-processor and triggerer plus two named Celery workers, all
on loopback. The test drives the real scheduler through the REST API (with
a token) and the CLI (``airflow backfill create``): ingest 10 seeded days,
train and promote, score 3 days in 4-chunk mapped runs. Then it kills the
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

pytestmark = pytest.mark.integration

MODEL = "flights_delay"
DATASET = "flights"
SEEDED = ("2013-01-01", "2013-01-10")
SCORED = ["2013-01-08", "2013-01-09", "2013-01-10"]
KILL_DS = "2013-01-09"
CHUNK_ROWS = 250  # ~950 rows a day: 4 chunks, 4 mapped tasks


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
