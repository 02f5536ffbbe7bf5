"""Batch scoring survives being killed: SIGKILL at chosen and random points, SIGTERM, a promotion mid-run.

Each run is a real ``pipelines score`` process. ``PIPELINES_FAULT_HOLD`` parks
it at a named point (inside a chunk write, between a chunk's write and its
commit, before the partition's data file or its manifest is published) so the
test can kill it exactly there; the random trials kill it wherever it is.
After every interruption a plain rerun must publish the same bytes as an
uninterrupted run, redoing at most the chunk that was in flight.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest

from pipelines.settings import PROJECT_ROOT

pytestmark = pytest.mark.integration

DS = "2013-01-28"
CHUNK_ROWS = 100
ROWS = 923  # validated rows of 2013-01-28
CHUNKS = 10


@pytest.fixture(scope="module")
def scored_root(january, tmp_path_factory):
    """January validated (with reports) and a champion, once per module."""
    from pipelines.config import load_project
    from pipelines.gate import run_gate
    from pipelines.training import train_challenger

    root = tmp_path_factory.mktemp("scoring") / "data"
    for zone in ("validated", "reports"):
        shutil.copytree(january / zone, root / zone)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PIPELINES_DATA_ROOT", str(root))
        mp.setenv("PIPELINES_CODE_VERSION", "test")
        train_challenger(load_project("flights_delay"), "2013-01-31")
        assert run_gate(load_project("flights_delay"))["promoted"]
        yield root


@pytest.fixture
def env(scored_root, monkeypatch):
    monkeypatch.setenv("PIPELINES_DATA_ROOT", str(scored_root))
    monkeypatch.setenv("PIPELINES_CODE_VERSION", "test")
    return scored_root


def _start(root, tmp_path, *extra: str, hold: str | None = None) -> tuple[subprocess.Popen, object, str]:
    env = {**os.environ, "PIPELINES_DATA_ROOT": str(root)}
    release = str(tmp_path / f"release-{time.monotonic_ns()}")
    if hold:
        env.update({"PIPELINES_FAULT_HOLD": hold, "PIPELINES_FAULT_RELEASE": release})
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


def _score(root, tmp_path, *extra: str) -> dict:
    proc, err, _ = _start(root, tmp_path, *extra)
    out, _ = proc.communicate(timeout=300)
    err.seek(0)
    assert proc.returncode == 0, err.read()[-2000:]
    return json.loads(out)


def _checkpoint(root) -> dict:
    """The run manifest, with ``committed``: the indices whose commit marker exists."""
    folder = root / f"checkpoints/flights_delay/ds={DS}"
    ckpt = json.loads((folder / "manifest.json").read_text())
    markers = (folder / ckpt["plan_id"]).glob("chunk-*.json")
    ckpt["committed"] = sorted(int(m.stem.split("-")[1]) for m in markers)
    return ckpt


def _published(root):
    import duckdb

    glob = str(root / "scores/flights_delay/*/*.parquet")
    return duckdb.execute(
        "select count(*), count(distinct row_id), any_value(model_version), count(distinct model_version) "
        "from read_parquet(?, hive_partitioning = true) where ds = ?",
        [glob, DS],
    ).fetchone()


def test_score_publishes_deterministically_and_duckdb_reads_it(env, tmp_path):
    first = _score(env, tmp_path)
    assert first["planned"] == CHUNKS and first["scored"] == CHUNKS and first["skipped"] == 0
    assert first["rows"] == first["input"]["rows"] == ROWS and first["model_version"] == "1"
    assert first["output"].endswith(f"scores/flights_delay/ds={DS}/part-00000.parquet")
    assert _published(env) == (ROWS, ROWS, "1", 1)
    manifest = json.loads((env / f"scores/flights_delay/ds={DS}/_manifest.json").read_text())
    assert manifest["output_sha256"] == first["output_sha256"] and manifest["mlflow_run_id"]

    import pyarrow.parquet as pq

    meta = pq.read_metadata(env / f"scores/flights_delay/ds={DS}/part-00000.parquet")
    assert meta.num_row_groups == CHUNKS  # one row group per chunk
    names = pq.read_schema(env / f"scores/flights_delay/ds={DS}/part-00000.parquet").names
    assert names == [
        "year", "month", "day", "carrier", "flight", "origin", "row_id", "score", "label", "model_name",
        "model_version", "mlflow_run_id", "training_fingerprint", "contract_version", "ds",
    ]  # fmt: skip

    again = _score(env, tmp_path)  # a rerun replaces the partition with the same bytes
    assert again["output_sha256"] == first["output_sha256"] and again["scored"] == CHUNKS
    assert _published(env) == (ROWS, ROWS, "1", 1)


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
    reference = _score(env, tmp_path)
    rng = random.Random(20130128)
    trials = [(p, None) for p in HOLD_POINTS] + [(None, rng.uniform(8.0, 14.0)) for _ in range(3)]
    for point, delay in trials:
        proc, err, _ = _start(env, tmp_path, hold=point)
        if point:
            _wait_hold(proc, err, point)
        else:
            time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        ckpt = _checkpoint(env)
        committed = len(ckpt["committed"]) if ckpt["status"] == "running" else None
        if point and point.startswith(("chunk_write", "chunk_commit")):
            assert committed == int(point.split(":")[1]), (point, committed)
        # Readers never see a partial partition: the old complete one is still there.
        assert _published(env) == (ROWS, ROWS, "1", 1), point or delay

        resumed = _score(env, tmp_path)
        what = point or f"random kill after {delay:.1f}s"
        assert resumed["output_sha256"] == reference["output_sha256"], what
        assert _published(env) == (ROWS, ROWS, "1", 1), what
        if committed is not None:
            # Only the chunk in flight (if any) is redone; committed ones are skipped.
            assert resumed["resumed"] and resumed["skipped"] == committed, what
            assert resumed["scored"] == CHUNKS - committed, what


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
    ckpt = _checkpoint(env)
    assert ckpt["status"] == "running" and ckpt["committed"] == [0, 1, 2]
    resumed = _score(env, tmp_path)
    assert resumed["skipped"] == 3 and resumed["scored"] == CHUNKS - 3


def test_promotion_mid_run_does_not_mix_versions(env, tmp_path):
    from pipelines.config import load_project
    from pipelines.tracking import CHAMPION, client
    from pipelines.training import train_challenger

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
        assert _published(env) == (ROWS, ROWS, "1", 1)  # every row, one version: the pinned one
        assert _score(env, tmp_path)["model_version"] == newer  # the next run pins the new champion
    finally:
        c.set_registered_model_alias("flights_delay", CHAMPION, "1")
