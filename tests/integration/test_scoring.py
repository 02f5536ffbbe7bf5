"""Batch scoring survives being killed: SIGKILL at chosen and random points, SIGTERM, a promotion mid-run.

Each run is a real ``pipelines score`` process. With the ops tooling's fault
hook plugged into the step (``PIPELINES_STEP_HOOK=pipelines_ops.faults:hold``),
``PIPELINES_FAULT_HOLD`` parks it at a named point (inside a chunk write,
between a chunk's write and its commit, before the partition's data file or its
manifest is published) so the test can kill it exactly there; the random trials
kill it wherever it is. After every interruption a plain rerun must publish the
same bytes as an uninterrupted run, redoing at most the chunk that was in flight.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from pipelines.core import catalog
from pipelines.core.settings import PROJECT_ROOT
from pipelines_ops import faults

pytestmark = pytest.mark.integration

DS = "2013-01-28"
MODEL = "flights_delay"
DATASET = "flights"
CHUNK_ROWS = 100
ROWS = 923  # validated rows of 2013-01-28
CHUNKS = 10


@pytest.fixture(scope="module")
def scored_root(january, tmp_path_factory):
    """January validated (with reports) and a champion, once per module."""
    from pipelines.core.config import load_project
    from pipelines.training.gate import run_gate
    from pipelines.training.train import train_challenger

    root = tmp_path_factory.mktemp("scoring") / "data"
    for table in (catalog.validated_table(DATASET), catalog.validation_reports(DATASET)):
        shutil.copytree(january / table, root / table)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PIPELINES_DATA_ROOT", str(root))
        mp.setenv("PIPELINES_CODE_VERSION", "test")
        train_challenger(load_project("flights_delay"), "2013-01-31")
        assert run_gate(load_project("flights_delay"))["promoted"]
        yield root


class Target:
    """Where the run writes (a local root, or a bucket on the S3 test server), read back with raw tools."""

    def __init__(self, kind: str, root: str, s3_client=None, tmp_path=None):
        self.kind, self.root, self.s3, self.tmp = kind, root, s3_client, tmp_path

    def _bucket_key(self, key: str) -> tuple[str, str]:
        bucket, _, prefix = self.root[len("s3://") :].partition("/")
        return bucket, f"{prefix}/{key}"

    def read(self, key: str) -> bytes | None:
        if self.kind == "local":
            path = os.path.join(self.root, key)
            return open(path, "rb").read() if os.path.exists(path) else None
        bucket, full = self._bucket_key(key)
        try:
            return self.s3.get_object(Bucket=bucket, Key=full)["Body"].read()
        except self.s3.exceptions.NoSuchKey:
            return None

    def keys(self, prefix: str) -> list[str]:
        if self.kind == "local":
            base = os.path.join(self.root, prefix)
            return sorted(os.path.relpath(os.path.join(d, f), self.root) for d, _, fs in os.walk(base) for f in fs)
        bucket, full = self._bucket_key(prefix)
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=full + "/")
        drop = len(self._bucket_key("")[1])
        return sorted(o["Key"][drop:] for page in pages for o in page.get("Contents", []))

    def checkpoint(self) -> dict:
        """The scoring plan, with ``committed``: the indices whose commit marker exists."""
        raw = self.read(catalog.scoring_plan(MODEL, DS))
        if raw is None:  # killed while re-planning, between clearing and writing it
            return {"status": "none", "committed": []}
        ckpt = json.loads(raw)
        keys = self.keys(catalog.plan_dir(MODEL, DS, ckpt["plan_id"]))
        markers = {catalog.chunk_marker(MODEL, DS, ckpt["plan_id"], c["index"]): c["index"] for c in ckpt["chunks"]}
        found = [k for k in keys if k.endswith(".json")]
        assert set(found) <= set(markers), f"commit markers outside the plan: {sorted(set(found) - set(markers))}"
        ckpt["committed"] = sorted(markers[k] for k in found)
        return ckpt

    def manifest(self) -> dict:
        return json.loads(self.read(catalog.scores_manifest(MODEL, DS)))

    def local_file(self, key: str):
        """A local path holding the object (the file itself on local disk)."""
        if self.kind == "local":
            return os.path.join(self.root, key)
        path = self.tmp / f"get-{time.monotonic_ns()}" / key
        path.parent.mkdir(parents=True)
        path.write_bytes(self.read(key))
        return str(path)

    def published(self) -> tuple:
        """What DuckDB reads from the published partition: rows, distinct row ids, a version, versions."""
        import duckdb

        key = catalog.scores_file(MODEL, DS)
        part = self.local_file(key)
        # Every partition of the table, the Hive layout, as a BI tool reads it.
        glob = part[: -len(key)] + catalog.parquet_glob(catalog.scores_table(MODEL))
        return duckdb.execute(
            "select count(*), count(distinct row_id), any_value(model_version), count(distinct model_version) "
            "from read_parquet(?, hive_partitioning = true) where ds = ?",
            [glob, DS],
        ).fetchone()


@pytest.fixture(params=["local", "s3"])
def env(request, scored_root, monkeypatch, tmp_path) -> Target:
    """The champion of ``scored_root``; the partition on local disk or in a fresh bucket on the S3 server."""
    monkeypatch.setenv("PIPELINES_CODE_VERSION", "test")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{scored_root}/mlflow/mlflow.db")
    if request.param == "local":
        monkeypatch.setenv("PIPELINES_DATA_ROOT", str(scored_root))
        return Target("local", str(scored_root))
    root = request.getfixturevalue("s3_root")  # sets PIPELINES_DATA_ROOT and the AWS_* variables
    # A run killed inside the partition's lock leaves its lock object until the lease lapses: keep it short.
    monkeypatch.setenv("PIPELINES_LOCK_LEASE_SECONDS", "5")
    from pipelines.core.storage import get_storage

    storage = get_storage()
    for key in (
        catalog.validated_file(DATASET, DS),
        catalog.validation_report(DATASET, DS),
        catalog.validation_html(DATASET, DS),
    ):
        storage.upload(key, str(scored_root / key))
    return Target("s3", root, request.getfixturevalue("s3_client"), tmp_path)


def _start(target, tmp_path, *extra: str, hold: str | None = None) -> tuple[subprocess.Popen, object, str]:
    env = dict(os.environ)  # the target's PIPELINES_DATA_ROOT, MLflow store and AWS_* settings
    release = str(tmp_path / f"release-{time.monotonic_ns()}")
    if hold:
        env.update(
            {"PIPELINES_STEP_HOOK": faults.HOOK, "PIPELINES_FAULT_HOLD": hold, "PIPELINES_FAULT_RELEASE": release}
        )
    err = open(tmp_path / f"stderr-{time.monotonic_ns()}.log", "w+")
    cmd = [sys.executable, "-m", "pipelines", "score", "--model", "flights_delay", "--ds", DS]
    cmd += ["--chunk-rows", str(CHUNK_ROWS), "--json", *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=env, cwd=PROJECT_ROOT)
    return proc, err, release


def _wait_hold(proc, err, point: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        err.seek(0)
        if f"HOLD {point}" in err.read():
            return
        assert proc.poll() is None, f"exited {proc.returncode} before {point}"
        time.sleep(0.05)
    raise AssertionError(f"never reached {point}")


def _score(target, tmp_path, *extra: str) -> dict:
    proc, err, _ = _start(target, tmp_path, *extra)
    out, _ = proc.communicate(timeout=300)
    err.seek(0)
    assert proc.returncode == 0, err.read()[-2000:]
    return json.loads(out)


def test_score_publishes_deterministically_and_duckdb_reads_it(env, tmp_path):
    first = _score(env, tmp_path)
    assert first["planned"] == CHUNKS and first["scored"] == CHUNKS and first["skipped"] == 0
    assert first["rows"] == first["input"]["rows"] == ROWS and first["model_version"] == "1"
    assert first["output"].endswith("/" + catalog.scores_file(MODEL, DS))
    assert env.published() == (ROWS, ROWS, "1", 1)
    manifest = env.manifest()
    assert manifest["output_sha256"] == first["output_sha256"] and manifest["mlflow_run_id"]

    import pyarrow.parquet as pq

    part = env.local_file(catalog.scores_file(MODEL, DS))
    meta = pq.read_metadata(part)
    assert meta.num_row_groups == CHUNKS  # one row group per chunk
    names = pq.read_schema(part).names
    assert names == [
        "year", "month", "day", "carrier", "flight", "origin", "row_id", "score", "label",
        "reason_1", "reason_1_contribution", "reason_2", "reason_2_contribution", "reason_3", "reason_3_contribution",
        "reason_method", "model_name", "model_version", "mlflow_run_id", "training_fingerprint", "contract_version",
        "ds",
    ]  # fmt: skip
    # Readers get plain types (the identity columns are dictionary pages in the file, strings to every reader)
    # and the file says what scored it, from which input.
    import pyarrow as pa

    from pipelines.scoring.publication import read_footer_identity

    schema = pq.read_schema(part)
    assert {schema.field(n).type for n in ("carrier", "model_name", "model_version", "mlflow_run_id")} == {pa.string()}
    assert {schema.field(n).type for n in ("reason_1", "reason_3", "reason_method")} == {pa.string()}
    assert schema.field("reason_1_contribution").type == pa.float32()
    assert (schema.field("row_id").type, schema.field("label").type, schema.field("ds").type) == (
        pa.int64(),
        pa.int8(),
        pa.date32(),
    )
    identity = read_footer_identity(part)
    assert identity["model_version"] == "1" and identity["input_sha256"] == manifest["input"]["sha256"]

    again = _score(env, tmp_path)  # a rerun replaces the partition with the same bytes
    assert again["output_sha256"] == first["output_sha256"] and again["scored"] == CHUNKS
    assert env.published() == (ROWS, ROWS, "1", 1)


HOLD_POINTS = [
    "chunk_write:0",
    "chunk_commit:0",
    "chunk_write:4",
    "chunk_commit:4",
    "chunk_write:9",
    "chunk_commit:9",
    "publish_data",
    "publish_manifest",
]


def test_sigkill_anywhere_then_rerun_publishes_the_same_partition(env, tmp_path):
    started = time.monotonic()
    reference = _score(env, tmp_path)
    took = time.monotonic() - started  # start-up, plan, 10 chunks, publish
    rng = random.Random(20130128)
    # Random instants inside a run of this machine's speed (start-up included).
    trials = [(p, None) for p in HOLD_POINTS] + [(None, rng.uniform(0.3, 0.85) * took) for _ in range(3)]
    for point, delay in trials:
        proc, err, _ = _start(env, tmp_path, hold=point)
        if point:
            _wait_hold(proc, err, point)
        else:
            time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL, f"not killed mid-run: {point or delay}"
        ckpt = env.checkpoint()
        committed = len(ckpt["committed"]) if ckpt["status"] == "running" else None
        if point and point.startswith(("chunk_write", "chunk_commit")):
            assert committed == int(point.split(":")[1]), (point, committed)
        # Readers never see a partial partition: the old complete one is still there.
        assert env.published() == (ROWS, ROWS, "1", 1), point or delay

        resumed = _score(env, tmp_path)
        what = point or f"random kill after {delay:.1f}s"
        assert resumed["output_sha256"] == reference["output_sha256"], what
        assert env.published() == (ROWS, ROWS, "1", 1), what
        if committed is not None:
            # Only the chunk in flight (if any) is redone; committed ones are skipped.
            assert resumed["resumed"] and resumed["skipped"] == committed, what
            assert resumed["scored"] == CHUNKS - committed, what


def test_a_shadow_lane_killed_anywhere_never_blocks_or_touches_the_champions_publication(env, tmp_path):
    """A shadow version's lane (here the champion's own version scored as a shadow: the lane is what is
    tried) parked mid-chunk or inside its publication locks, then SIGKILLed: the champion's lane plans,
    scores and publishes meanwhile, the same bytes, and BI's table never holds a shadow row."""
    reference = _score(env, tmp_path)
    shadow = catalog.Lane(MODEL, "1")
    for point in ("chunk_commit:3", "publish_data"):
        proc, err, _ = _start(env, tmp_path, "--shadow", "1", "--restart", hold=point)
        _wait_hold(proc, err, point)  # publish_data: the shadow holds the validated lock and its lane's
        again = _score(env, tmp_path, "--restart")
        assert again["output_sha256"] == reference["output_sha256"] and again["lane"] == "champion", point
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
        assert env.published() == (ROWS, ROWS, "1", 1), point
        assert env.read(catalog.scores_manifest(shadow, DS)) is None, point  # the killed lane published nothing
    resumed = _score(env, tmp_path, "--shadow", "1")
    assert resumed["lane"] == "shadow" and resumed["rows"] == ROWS and resumed["resumed"]
    assert resumed["skipped"] == CHUNKS  # parked at publish_data: every chunk was committed
    assert resumed["output"].endswith(catalog.scores_file(shadow, DS))
    assert env.read(catalog.scores_file(shadow, DS)) is not None
    assert json.loads(env.read(catalog.scores_manifest(MODEL, DS)))["output_sha256"] == reference["output_sha256"]
    assert env.published() == (ROWS, ROWS, "1", 1)  # the shadow's rows are not in BI's table
    assert not [k for k in env.keys("scores") if "/v=" in k]


def test_sigterm_stops_at_a_chunk_boundary_and_resumes(env, tmp_path):
    proc, err, release = _start(env, tmp_path, hold="chunk_commit:2")
    _wait_hold(proc, err, "chunk_commit:2")
    proc.send_signal(signal.SIGTERM)
    open(release, "w").close()
    proc.wait(timeout=60)
    err.seek(0)
    assert proc.returncode == 6, err.read()[-2000:]
    err.seek(0)
    assert f"stopped on SIGTERM after 3 of {CHUNKS} chunk(s)" in err.read()
    ckpt = env.checkpoint()
    assert ckpt["status"] == "running" and ckpt["committed"] == [0, 1, 2]
    resumed = _score(env, tmp_path)
    assert resumed["skipped"] == 3 and resumed["scored"] == CHUNKS - 3


@pytest.mark.parametrize("env", ["local"], indirect=True)  # the registry is the same either way
def test_promotion_mid_run_does_not_mix_versions(env, tmp_path):
    from pipelines.core.config import load_project
    from pipelines.core.tracking import CHAMPION, client
    from pipelines.training.train import train_challenger

    newer = train_challenger(load_project("flights_delay"), "2013-01-31", force=True)["version"]
    c = client()
    proc, err, release = _start(env, tmp_path, "--restart", hold="chunk_commit:3")
    _wait_hold(proc, err, "chunk_commit:3")
    c.set_registered_model_alias("flights_delay", CHAMPION, newer)  # a promotion lands mid-run
    try:
        open(release, "w").close()
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0
        assert json.loads(out)["model_version"] == "1"
        assert env.published() == (ROWS, ROWS, "1", 1)  # every row, one version: the pinned one
        assert _score(env, tmp_path)["model_version"] == newer  # the next run pins the new champion
    finally:
        c.set_registered_model_alias("flights_delay", CHAMPION, "1")


@pytest.mark.parametrize("env", ["local"], indirect=True)
def test_a_revalidated_partition_is_never_resumed_or_mixed(env, tmp_path):
    """Same key, same row count, new content: the old plan is superseded, not resumed."""

    from pipelines.core.config import load_project
    from pipelines.core.errors import PlanConflict
    from pipelines.scoring import plan_run, publish, score_chunks

    project = load_project("flights_delay")
    old = plan_run(project, DS, chunk_rows=CHUNK_ROWS, restart=True)
    score_chunks(project, DS, old["plan_id"], [0, 1])
    with _revalidated(env, tmp_path):
        with pytest.raises(PlanConflict, match="changed since plan"):
            score_chunks(project, DS, old["plan_id"], [2])
        new = plan_run(project, DS, chunk_rows=CHUNK_ROWS)
        assert not new["resumed"] and new["plan_id"] != old["plan_id"] and new["committed"] == []
        with pytest.raises(PlanConflict, match="no longer current"):
            publish(project, DS, old["plan_id"])


@contextlib.contextmanager
def _revalidated(target, tmp_path):
    """The day re-delivered and re-validated: same rows, one column's values changed; restored afterwards."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    path = os.path.join(target.root, catalog.validated_file(DATASET, DS))
    backup = tmp_path / "validated.parquet"
    shutil.copy(path, backup)
    try:
        table = pq.read_table(path)
        i = table.schema.get_field_index("distance")
        table = table.set_column(i, "distance", pc.add(table["distance"], pa.scalar(1, table["distance"].type)))
        pq.write_table(table, path, row_group_size=256_000)
        yield
    finally:
        shutil.copy(backup, path)


def _chunk_worker(indices: list[int], plan_id: str) -> subprocess.Popen:
    code = (
        "import sys; from pipelines.core.config import load_project; from pipelines.scoring import score_chunks; "
        f"print(score_chunks(load_project('flights_delay'), '{DS}', '{plan_id}', {indices!r}))"
    )
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("env", ["local"], indirect=True)
def test_chunks_scored_by_concurrent_processes_publish_the_same_partition(env, tmp_path):
    """Two workers commit disjoint chunks of one plan at once (as mapped tasks do): no lost commit."""
    from pipelines.core.config import load_project
    from pipelines.scoring import plan_run, publish

    reference = _score(env, tmp_path)
    project = load_project("flights_delay")
    plan = plan_run(project, DS, chunk_rows=CHUNK_ROWS, restart=True)
    workers = [_chunk_worker([0, 2, 4, 6, 8], plan["plan_id"]), _chunk_worker([1, 3, 5, 7, 9], plan["plan_id"])]
    for w in workers:
        _, err = w.communicate(timeout=300)
        assert w.returncode == 0, err[-2000:]
    assert env.checkpoint()["committed"] == list(range(CHUNKS))
    manifest = publish(project, DS, plan["plan_id"])
    assert manifest["output_sha256"] == reference["output_sha256"]
    assert publish(project, DS, plan["plan_id"]) == manifest  # publishing again is a no-op


@pytest.mark.parametrize("env", ["local"], indirect=True)
def test_a_corrupted_chunk_is_uncommitted_and_rescored(env, tmp_path):
    from pipelines.core.config import load_project
    from pipelines.core.errors import MissingInput
    from pipelines.scoring import plan_run, publish, score_chunks

    reference = _score(env, tmp_path)
    project = load_project("flights_delay")
    plan = plan_run(project, DS, chunk_rows=CHUNK_ROWS, restart=True)
    score_chunks(project, DS, plan["plan_id"])
    chunk = os.path.join(env.root, catalog.chunk_data(MODEL, DS, plan["plan_id"], 3))
    with open(chunk, "r+b") as fh:  # bit rot on the checkpoint store
        fh.seek(100)
        fh.write(b"\x00\xff")
    with pytest.raises(MissingInput, match="does not match its checksum"):
        publish(project, DS, plan["plan_id"])
    assert 3 not in env.checkpoint()["committed"]
    assert score_chunks(project, DS, plan["plan_id"])["chunks"] == [3]  # only that chunk is redone
    assert publish(project, DS, plan["plan_id"])["output_sha256"] == reference["output_sha256"]


@pytest.mark.parametrize("env", ["local"], indirect=True)
def test_lineage_gives_the_whole_chain_and_notices_a_revalidation(env, tmp_path):

    published = _score(env, tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "pipelines", "lineage", "--model", "flights_delay", "--ds", DS, "--json"],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        cwd=PROJECT_ROOT,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads(proc.stdout)
    assert r["consistent"] and r["problems"] == []
    assert r["scores"]["sha256"] == published["output_sha256"] and r["scores"]["rows"] == ROWS
    v, t, g, i = r["model_version"], r["training"], r["gate"], r["input"]
    assert v["version"] == "1" and v["mlflow_run_id"] == published["mlflow_run_id"] and v["choice"] == "current"
    assert t["window"] == "2013-01-01..2013-01-24" and t["holdout_window"] == "2013-01-25..2013-01-31"
    assert t["data_fingerprint"] == published["training_fingerprint"] and t["train_rows"] > 0
    assert g["decision"] == "promoted" and g["decision_uri"].startswith(f"runs:/{v['mlflow_run_id']}/gate/")
    assert i["validated"].endswith("/" + catalog.validated_file(DATASET, DS)) and i["rows"] == ROWS
    assert i["validation_status"] == "published" and i["contract_version"] == t["contract_version"]
    # Every link is the catalog's key of its artifact.
    assert r["scores"]["uri"].endswith("/" + catalog.scores_file(MODEL, DS))
    assert r["scores"]["manifest"].endswith("/" + catalog.scores_manifest(MODEL, DS))
    assert i["validation_report"].endswith("/" + catalog.validation_report(DATASET, DS))
    assert t["training_set"].endswith("/" + catalog.training_dir(MODEL, "2013-01-31"))

    from pipelines.core.config import load_project
    from pipelines.lineage import lineage

    with _revalidated(env, tmp_path):
        again = lineage(load_project("flights_delay"), DS)
        assert not again["consistent"] and "re-validated" in again["problems"][0]
    missing = subprocess.run(
        [sys.executable, "-m", "pipelines", "lineage", "--model", "flights_delay", "--ds", "2013-01-05"],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        timeout=120,
    )
    assert missing.returncode == 5 and "is not scored" in missing.stderr


@pytest.mark.parametrize("env", ["local"], indirect=True)
def test_the_readme_bi_queries_read_the_scores(env, tmp_path):
    """The README's BI analyst block (DuckDB SQL) and its pandas one-liner, on a published partition."""
    import re

    import duckdb
    import pandas as pd

    _score(env, tmp_path)
    readme = (PROJECT_ROOT / "README.md").read_text()
    bi = readme[readme.index("**BI analyst.**") :]
    sql = re.search(r"```sql\n(.*?)```", bi, re.S).group(1)
    sql = sql.replace("'data/scores/", f"'{env.root}/scores/")
    rows = duckdb.execute(sql).fetchall()
    assert [(str(r[0]), r[1], r[2]) for r in rows] == [(DS, "1", ROWS)]
    assert 0 < rows[0][3] < 1 and 0 <= rows[0][4] <= ROWS
    call = re.search(r'`(pd\.read_parquet\("data/scores/flights_delay"[^`]*)`', bi).group(1)
    frame = eval(call.replace('"data/', f'"{env.root}/'), {"pd": pd})  # the README's own line
    assert len(frame) == ROWS and str(frame["ds"].iloc[0]) == DS


@pytest.mark.parametrize("point", ["publish_data", "publish_manifest"])
def test_a_stale_publish_never_overwrites_a_newer_one(env, tmp_path, point):
    """Run A is held inside its publish; run B re-plans the day (another chunking: other bytes) meanwhile.

    Whatever the order the two finish in, the partition ends as one run's file with that run's manifest
    and plan: never A's file under B's manifest.
    """
    import hashlib

    from pipelines.core.config import load_project
    from pipelines.lineage import lineage

    a, a_err, release = _start(env, tmp_path, "--restart", hold=point)
    _wait_hold(a, a_err, point)
    b_err = open(tmp_path / "b-stderr.log", "w+")
    cmd = [sys.executable, "-m", "pipelines", "score", "--model", MODEL, "--ds", DS, "--chunk-rows", "200"]
    b = subprocess.Popen(
        [*cmd, "--restart", "--json"], stdout=subprocess.PIPE, stderr=b_err, text=True, cwd=PROJECT_ROOT
    )
    try:  # B plans, scores and publishes while A is held, unless a lock makes it wait for A
        deadline = time.monotonic() + 180
        while b.poll() is None and time.monotonic() < deadline:
            b_err.seek(0)
            if "waiting for lock" in b_err.read():
                break
            time.sleep(0.1)
    finally:
        open(release, "w").close()
    a.communicate(timeout=300)
    b.communicate(timeout=300)
    b_err.seek(0)
    assert b.returncode == 0, b_err.read()[-2000:]
    assert a.returncode in (0, 7), a.returncode  # published first, or told its plan was superseded
    manifest = env.manifest()
    plan = json.loads(env.read(catalog.scoring_plan(MODEL, DS)))
    data = env.read(catalog.scores_file(MODEL, DS))
    assert manifest["plan_id"] == plan["plan_id"] and plan["status"] == "published"
    assert hashlib.sha256(data).hexdigest() == manifest["output_sha256"]
    assert manifest["chunk_rows"] == 200  # B re-planned last: its publish is the one that stands
    assert env.published() == (ROWS, ROWS, "1", 1)
    assert lineage(load_project(MODEL), DS)["consistent"]


@pytest.mark.parametrize("env", ["local"], indirect=True)
def test_scores_follow_their_data_when_the_day_is_revalidated_or_halts(env, tmp_path):
    """Same delivery again: scores stay. New content: withdrawn, then rescored. A halt: withdrawn."""
    from pipelines.core.config import load_project
    from pipelines.core.errors import ContractHalt, MissingInput
    from pipelines.core.storage import get_storage
    from pipelines.ingest.validation import validate_partition
    from pipelines.lineage import lineage
    from pipelines.scoring import score_partition
    from pipelines_ops.demo_data import seed_demo

    day = "2013-01-29"
    project, storage = load_project(MODEL), get_storage()
    scores, manifest_key = catalog.scores_file(MODEL, day), catalog.scores_manifest(MODEL, day)
    backup = {
        k: storage.read_bytes(k)
        for k in (catalog.validated_file(DATASET, day), catalog.validation_report(DATASET, day))
    }
    try:
        seed_demo(project, day, day, storage=storage)
        validate_partition(project, day, storage=storage)
        first = score_partition(project, day, storage=storage)

        validate_partition(project, day, storage=storage)  # the same delivery again: the same validated bytes
        assert storage.read_json(manifest_key)["plan_id"] == first["plan_id"] and storage.exists(scores)

        landed = catalog.landing_file(DATASET, day, "flights_EWR.csv")
        text = storage.read_bytes(landed).decode().rstrip("\n").split("\n")
        storage.write_bytes(landed, ("\n".join(text[:-1]) + "\n").encode())  # a flight withdrawn upstream
        storage.write_bytes(catalog.landing_file(DATASET, day, project.dataset.ingest.ready_marker), b"")
        validate_partition(project, day, storage=storage)
        assert not storage.exists(scores) and not storage.exists(manifest_key)
        withdrawal = catalog.scores_withdrawal(MODEL, day)
        record = storage.read_json(withdrawal)
        assert "re-validated" in record["why"] and record["plan_id"] == first["plan_id"]
        with pytest.raises(MissingInput, match="withdrawn"):
            lineage(project, day)

        again = score_partition(project, day, storage=storage)
        assert again["rows"] == first["rows"] - 1 and not storage.exists(withdrawal)
        assert lineage(project, day)["consistent"]

        storage.delete(catalog.landing_file(DATASET, day, "flights_JFK.csv"))  # an incomplete redelivery
        storage.write_bytes(catalog.landing_file(DATASET, day, project.dataset.ingest.ready_marker), b"")
        with pytest.raises(ContractHalt):
            validate_partition(project, day, storage=storage)
        assert not storage.exists(scores) and "halted" in storage.read_json(withdrawal)["why"]
    finally:
        for k, v in backup.items():
            storage.write_bytes(k, v)
        storage.delete_prefix(catalog.landing_dir(DATASET, day))
        for k in (scores, manifest_key, f"{catalog.scores_table(MODEL)}/ds={day}/_withdrawn.json"):
            if storage.exists(k):
                storage.delete(k)


@pytest.mark.parametrize("env", ["local"], indirect=True)
def test_a_publish_stalled_between_its_checks_and_its_upload_never_lands_over_a_newer_one(env, tmp_path):
    """Run A passes every check, then stalls in its upload; run B re-plans, scores and publishes meanwhile.

    A's late upload must never leave A's file under B's manifest: either B waits for A (the partition's
    lock), or A's write is refused.
    """
    import hashlib
    import threading

    from pipelines.core.config import load_project
    from pipelines.core.storage import LocalStorage, get_storage
    from pipelines.scoring import plan_run, publish, score_chunks

    project, storage = load_project(MODEL), get_storage()
    data_key = catalog.scores_file(MODEL, DS)
    a = plan_run(project, DS, chunk_rows=CHUNK_ROWS, restart=True)
    score_chunks(project, DS, a["plan_id"])
    entered, release = threading.Event(), threading.Event()

    class Stalling(LocalStorage):
        def upload(self, key: str, path: str) -> str:
            if key == data_key:
                entered.set()
                release.wait(120)
            return super().upload(key, path)

    outcome: dict[str, object] = {}

    def run(name: str, fn) -> None:
        try:
            outcome[name] = fn()
        except Exception as exc:  # the outcome is what the test looks at
            outcome[name] = exc

    def newer_run() -> dict:
        b = plan_run(project, DS, chunk_rows=200, restart=True)
        score_chunks(project, DS, b["plan_id"])
        return publish(project, DS, b["plan_id"])

    run_a = threading.Thread(target=run, args=("a", lambda: publish(project, DS, a["plan_id"], Stalling(storage.root))))
    run_a.start()
    assert entered.wait(120)
    run_b = threading.Thread(target=run, args=("b", newer_run))
    run_b.start()
    run_b.join(timeout=20)  # B finishes now unless something makes it wait for A
    release.set()
    run_a.join(timeout=120)
    run_b.join(timeout=120)
    assert isinstance(outcome["b"], dict), outcome["b"]
    manifest = env.manifest()
    plan = json.loads(env.read(catalog.scoring_plan(MODEL, DS)))
    assert manifest["plan_id"] == plan["plan_id"] == outcome["b"]["plan_id"]
    assert hashlib.sha256(env.read(data_key)).hexdigest() == manifest["output_sha256"]


@pytest.mark.parametrize("env", ["local"], indirect=True)
def test_lineage_verifies_the_checksum_of_the_file_it_reports(env, tmp_path):
    """A scores file replaced behind its manifest's back (another plan's bytes) is reported, not vouched for."""
    from pipelines.core.config import load_project
    from pipelines.lineage import lineage

    first = _score(env, tmp_path, "--restart")
    path = os.path.join(env.root, catalog.scores_file(MODEL, DS))
    original = open(path, "rb").read()
    try:
        _score(env, tmp_path, "--restart", "--chunk-rows", "300")  # the same rows in other row groups
        other = open(path, "rb").read()
        assert other != original
        open(path, "wb").write(original)  # the first run's file under the second run's manifest
        r = lineage(load_project(MODEL), DS)
        assert not r["consistent"] and any("SHA-256" in p for p in r["problems"]), r["problems"]
    finally:
        _score(env, tmp_path, "--restart")
    assert lineage(load_project(MODEL), DS)["consistent"] and first["rows"] == ROWS


@pytest.mark.parametrize("env", ["local"], indirect=True)
def test_a_run_planned_before_plans_named_their_input_version_resumes(env, tmp_path):
    """A plan from before plans recorded the input's version (an upgrade mid-run) keeps its committed chunks."""
    from pipelines.core.config import load_project
    from pipelines.core.storage import get_storage
    from pipelines.scoring import plan_run, publish, score_chunks

    reference = _score(env, tmp_path)
    project, storage = load_project("flights_delay"), get_storage()
    plan = plan_run(project, DS, chunk_rows=CHUNK_ROWS, restart=True)
    score_chunks(project, DS, plan["plan_id"], [0, 1, 2])
    key = catalog.scoring_plan(MODEL, DS)
    old = storage.read_json(key)
    del old["input"]["version"]
    storage.write_json(key, old)
    again = plan_run(project, DS)
    assert again["resumed"] and again["plan_id"] == plan["plan_id"] and again["committed"] == [0, 1, 2]
    assert storage.read_json(key)["input"]["version"] == plan["input"]["version"]
    assert score_chunks(project, DS, plan["plan_id"])["scored"] == CHUNKS - 3
    assert publish(project, DS, plan["plan_id"])["output_sha256"] == reference["output_sha256"]


def test_the_model_cache_loads_a_version_once_checks_it_and_never_serves_another_runs_model(
    scored_root, monkeypatch, tmp_path
):
    """A worker keeps a version's files: the next load asks no registry and imports no MLflow; a damaged entry is
    fetched again; a run id the registry does not give for that version is refused, never served."""
    from pipelines.core.errors import MissingInput
    from pipelines.core.model_cache import RECORD, load_version
    from pipelines.core.tracking import CHAMPION, client

    monkeypatch.setenv("PIPELINES_DATA_ROOT", str(scored_root))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{scored_root}/mlflow/mlflow.db")
    cache = tmp_path / "cache"
    monkeypatch.setenv("PIPELINES_MODEL_CACHE", str(cache))
    mv = client().get_model_version_by_alias(MODEL, CHAMPION)
    rows = pd.read_parquet(scored_root / catalog.validated_file(DATASET, DS))
    want = load_version(MODEL, mv.version, mv.run_id).predict_proba(rows)
    [entry] = [p for p in cache.iterdir() if not p.name.startswith(".")]
    assert (entry / RECORD).is_file() and (entry / "model.pkl").is_file()

    probe = (
        "import sys, pandas as pd\n"
        "from pipelines.core.model_cache import load_version\n"
        f"m = load_version({MODEL!r}, {mv.version!r}, {mv.run_id!r})\n"
        f"pd.DataFrame(m.predict_proba(pd.read_parquet({str(scored_root / catalog.validated_file(DATASET, DS))!r})))"
        f".to_parquet({str(tmp_path / 'p.parquet')!r})\n"
        "print('mlflow' in sys.modules)\n"
    )

    def fresh_process() -> str:
        out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=PROJECT_ROOT)
        assert out.returncode == 0, out.stderr[-2000:]
        np.testing.assert_array_equal(pd.read_parquet(tmp_path / "p.parquet").to_numpy(), want)
        return out.stdout.strip()

    assert fresh_process() == "False"  # from the cache: MLflow never imported
    (entry / "model.pkl").write_bytes(b"not a pickle")  # damaged on the worker's disk
    assert fresh_process() == "True"  # the record did not match: fetched again from MLflow
    assert fresh_process() == "False"
    with pytest.raises(MissingInput, match="not of run"):
        load_version(MODEL, mv.version, "0" * 32)  # a plan naming another run never gets this version's model
    assert sorted(p.name for p in cache.iterdir() if not p.name.startswith(".")) == [entry.name]

    monkeypatch.setenv("PIPELINES_MODEL_CACHE", "off")
    np.testing.assert_array_equal(load_version(MODEL, mv.version, mv.run_id).predict_proba(rows), want)


def test_a_retried_run_whose_plan_published_returns_that_publication_and_never_publishes_again(env, tmp_path):
    """The DAG's plan task scores and publishes a one-chunk day itself. An attempt that dies after publishing
    and before Airflow records it is retried: the retry (same run) finds its published plan and returns it,
    never re-pins and publishes again; another run (or the CLI) scores the day afresh, as it always has."""
    from pipelines.core.config import load_project
    from pipelines.scoring import plan_or_score

    project = load_project(MODEL)
    first = plan_or_score(project, DS, run_key="manual__1")
    assert first["manifest"] is not None and first["manifest"]["chunks"] == 1 and not first["resumed"]
    published = env.read(catalog.scores_file(MODEL, DS))
    retry = plan_or_score(project, DS, run_key="manual__1", restart=True)
    assert retry["resumed"] and retry["plan_id"] == first["plan_id"] and retry["manifest"] == first["manifest"]
    assert env.read(catalog.scores_file(MODEL, DS)) == published
    other = plan_or_score(project, DS, run_key="manual__2")
    assert other["plan_id"] != first["plan_id"] and not other["resumed"]
    assert other["manifest"]["output_sha256"] == first["manifest"]["output_sha256"]  # same input, same version
    assert env.checkpoint()["run_key"] == "manual__2"
    # The first run's late retry, its publication superseded since: it returns what it did, publishes nothing.
    late = plan_or_score(project, DS, run_key="manual__1")
    assert late["plan_id"] == first["plan_id"] and late["manifest"] == first["manifest"]
    assert env.manifest()["plan_id"] == other["plan_id"]
    # A manifest gone under a run's own published plan (deleted by hand): that run scores the day again.
    third = plan_or_score(project, DS, run_key="manual__3")
    from pipelines.core.storage import get_storage

    get_storage().delete(catalog.scores_manifest(MODEL, DS))
    get_storage().delete(catalog.scoring_run(MODEL, DS, "manual__3"))
    again = plan_or_score(project, DS, run_key="manual__3")
    assert again["plan_id"] != third["plan_id"] and env.manifest()["plan_id"] == again["plan_id"]
