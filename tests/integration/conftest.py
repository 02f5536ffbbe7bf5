"""Fixtures for integration tests: real servers on loopback, started by the tests.

``s3_server`` runs moto in server mode as a separate process (a genuine
S3-protocol endpoint on 127.0.0.1); ``s3_root`` gives each test a fresh
bucket and points ``PIPELINES_DATA_ROOT`` and boto3 at it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipelines_ops.loopback import free_ports, port_open, status

REGION = "us-east-1"
START_TIMEOUT_S = 30.0


def require(condition: bool, reason: str) -> None:
    """Same rule as ``tests/conftest.py:require``: skip locally, fail when ``CI=true``.

    Replicated rather than imported: conftest files outside packages all load
    as the module ``conftest``, and pytest drops the root one from
    ``sys.modules`` before importing this one, so ``from conftest import
    require`` here would import this very (half-initialised) module.
    """
    if condition:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"required service missing in CI: {reason}")
    pytest.skip(reason)


def _answers(url: str) -> bool:
    return status(url, timeout=1) == 200


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _moto_server_exe() -> str | None:
    beside = Path(sys.executable).with_name("moto_server")
    if beside.is_file():
        return str(beside)
    return shutil.which("moto_server")


@pytest.fixture(scope="session")
def postgres_and_redis() -> None:
    """The machine's PostgreSQL (127.0.0.1:5432) and Redis (127.0.0.1:6379), which the prod profile uses."""
    for name, port in (("PostgreSQL", 5432), ("Redis", 6379)):
        require(port_open(port), f"{name} is not running on 127.0.0.1:{port}")


@pytest.fixture(scope="session")
def system_chromium() -> tuple[str, str]:
    """Debian's headless browser and its driver (``make system`` installs them); never a downloaded one."""
    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    require(bool(browser and driver), "chromium and chromium-driver are not installed (make setup installs them)")
    return browser, driver


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory) -> Iterator[str]:
    """Endpoint URL of a moto S3 server subprocess on 127.0.0.1 (a free port)."""
    exe = _moto_server_exe()
    require(exe is not None, "moto_server is not installed (pip install 'moto[server]')")
    log_path = tmp_path_factory.mktemp("moto") / "moto_server.log"
    proc = None
    endpoint = ""
    failure = ""
    # A free port can be taken between probing and binding: retry a few times.
    for _attempt in range(3):
        (port,) = free_ports(1)
        endpoint = f"http://127.0.0.1:{port}"
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                [exe, "-H", "127.0.0.1", "-p", str(port)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline and proc.poll() is None:
            if _answers(f"{endpoint}/moto-api/"):
                break
            time.sleep(0.1)
        if proc.poll() is None and _answers(f"{endpoint}/moto-api/"):
            break
        _stop(proc)
        proc = None
        failure = log_path.read_text(errors="replace")[-2000:]
    require(proc is not None, f"moto_server did not start on 127.0.0.1: {failure}")
    try:
        yield endpoint
    finally:
        _stop(proc)


@pytest.fixture
def s3_env(s3_server, monkeypatch, tmp_path) -> str:
    """boto3 pointed at the test server with dummy credentials; returns the endpoint."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    # Nothing from the developer's machine may leak in (profiles, real keys, other endpoints).
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_REGION", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(var, raising=False)
    empty = tmp_path / "aws-empty-config"
    empty.write_text("")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.delenv("PIPELINES_PROFILE", raising=False)
    return s3_server


@pytest.fixture
def s3_client(s3_env):
    """A raw boto3 S3 client on the test server, to check what really is in the bucket."""
    import boto3

    return boto3.client("s3", endpoint_url=s3_env, region_name=REGION)


@pytest.fixture
def s3_root(s3_env, s3_client, monkeypatch) -> str:
    """A fresh bucket; ``PIPELINES_DATA_ROOT`` is set to ``s3://<bucket>/<prefix>`` and returned."""
    bucket = f"pipelines-test-{uuid.uuid4().hex[:16]}"
    s3_client.create_bucket(Bucket=bucket)
    root = f"s3://{bucket}/root"
    monkeypatch.setenv("PIPELINES_DATA_ROOT", root)
    return root


# ---- Airflow: one migrated metadata DB per session, DAG files loaded as the dag-processor would


@pytest.fixture(scope="session")
def airflow_db():
    """A migrated SQLite metadata DB in the session's AIRFLOW_HOME."""
    import sys

    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        check=True,
        capture_output=True,
        timeout=300,
        env=os.environ.copy(),
    )
    return os.environ["AIRFLOW_HOME"]


@pytest.fixture
def dag_root(airflow_db, monkeypatch, tmp_path) -> Path:
    """An emptied storage root at the same path for every DAG test of the session.

    Asset URIs name the storage folder, and the metadata DB keeps the first
    serialized version of a DAG file's assets across ``dag.test()`` calls of
    one process: a per-test root would leave later tests with an earlier
    test's (inactive) URIs. One deployment has one root; so do these tests.
    The root's asset history goes with its files: each test starts with no
    asset events and nothing queued on them, whichever tests ran before it.
    """
    _forget_asset_events()
    root = Path(os.environ["AIRFLOW_HOME"]) / "data"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    monkeypatch.setenv("PIPELINES_DATA_ROOT", str(root))
    monkeypatch.setenv("PIPELINES_CODE_VERSION", "test")
    monkeypatch.delenv("PIPELINES_PROFILE", raising=False)
    # MLflow caches its store per URI in the process: a per-test URI gives each test a fresh registry.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.setenv("PIPELINES_MLFLOW_ARTIFACT_ROOT", str(tmp_path / "mlflow-artifacts"))
    return root


def _forget_asset_events() -> None:
    from airflow.models.asset import (
        AssetDagRunQueue,
        AssetEvent,
        asset_alias_asset_event_association_table,
        association_table,
    )
    from airflow.utils.session import create_session

    with create_session() as session:
        session.execute(association_table.delete())
        session.execute(asset_alias_asset_event_association_table.delete())
        session.query(AssetDagRunQueue).delete()
        session.query(AssetEvent).delete()


@pytest.fixture
def dag_jan_root(dag_root, january) -> Path:
    """``dag_root`` holding the validated January and its validation reports."""
    from pipelines.core import catalog

    for table in (catalog.validated_table("flights"), catalog.validation_reports("flights")):
        shutil.copytree(january / table, dag_root / table)
    return dag_root


@pytest.fixture
def dag_seasons_root(dag_root, seasons) -> Path:
    """``dag_root`` holding validated January, early February and 2013-06-10..07-08."""
    from pipelines.core import catalog

    table = catalog.validated_table("flights")
    shutil.copytree(seasons / table, dag_root / table)
    return dag_root


@pytest.fixture
def load_dag():
    """``load_dag("ingest.py", "ingest_flights")``: the DAG object from a fresh import of its file."""
    import importlib.util

    from pipelines.core.settings import PROJECT_ROOT

    def load(filename: str, dag_id: str):
        spec = importlib.util.spec_from_file_location(f"dag_under_test_{dag_id}", PROJECT_ROOT / "dags" / filename)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        dag = getattr(module, dag_id)
        # Airflow 3.3's dag.test() keeps the deadline alerts of its scheduler-side copy unsaved, and a run
        # that succeeds then looks them up by id and fails (DagRun.update_state). Deadlines are the
        # scheduler's to watch, which dag.test() has none of: tests/integration/test_alerts.py watches
        # them with a real scheduler and triggerer. Here the DAG runs without them.
        dag.deadline = None
        return dag

    return load


@pytest.fixture
def task_states():
    """``task_states(run)``: task id -> state of a finished ``dag.test()`` run."""

    def states(run) -> dict[str, str]:
        from airflow.models.taskinstance import TaskInstance
        from airflow.utils.session import create_session

        with create_session() as session:
            tis = session.query(TaskInstance).filter_by(dag_id=run.dag_id, run_id=run.run_id).all()
            return {ti.task_id: str(ti.state) for ti in tis}

    return states
