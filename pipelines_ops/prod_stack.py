"""The prod profile on one machine, without Docker: ``make up-prod`` / ``make down-prod``.

Same DAGs, same code, production components, against the machine's
PostgreSQL and Redis:

- Airflow metadata: PostgreSQL database ``<name>_airflow`` (docker/: the
  ``postgres`` service);
- executor: CeleryExecutor, Redis broker (db ``redis_db``), results in
  PostgreSQL (docker/: ``redis`` and ``airflow-worker`` replicas);
- Airflow processes: api-server, scheduler, dag-processor, triggerer and
  ``workers`` Celery workers (docker/: one service each);
- MLflow: ``mlflow server`` (basic-auth app) on PostgreSQL
  ``<name>_mlflow``, users in ``<name>_mlflow_auth``, artifacts proxied to S3
  (docker/: the ``mlflow`` service);
- storage: an S3 endpoint, ``AWS_ENDPOINT_URL`` if set, else moto's server
  on loopback (docker/: MinIO).

Authentication is on everywhere: Airflow's SimpleAuthManager with named
users (no all-admins mode) and MLflow's basic-auth app. Generated secrets
(JWT secret, Fernet key, passwords) live in ``<home>/secrets.json``, mode
0600, never in the repository or a log; ``up`` prints where they are.
Each Celery worker has its own name (``PIPELINES_WORKER_NAME``), recorded
as the task instance's hostname through :mod:`pipelines.core.workers`.

Everything listens on 127.0.0.1 only. Imports nothing from Airflow (it
drives the ``airflow`` and ``mlflow`` executables).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.core.settings import PROJECT_ROOT
from pipelines_ops.loopback import AirflowApi, basic_auth, call, free_ports, status

COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
DATABASES = ("airflow", "mlflow", "mlflow_auth")
ADMIN = "admin"
PIPELINE_USER = "pipelines"  # the MLflow account the tasks use


def _bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


@dataclass
class Stack:
    """One prod-profile deployment on this machine; its state lives in ``home``."""

    home: Path
    name: str = "pipelines_prod"
    postgres: str = "postgresql+psycopg2://postgres@127.0.0.1:5432"
    redis: str = "redis://127.0.0.1:6379"
    redis_db: int = 5
    workers: int = 2
    bucket: str = "pipelines-data"
    ports: dict[str, int] = field(default_factory=dict)
    extra_env: dict[str, str] = field(default_factory=dict)
    _secrets: dict[str, str] | None = field(default=None, init=False, repr=False)
    _api: AirflowApi | None = field(default=None, init=False, repr=False)

    # ---- state

    @property
    def state_file(self) -> Path:
        return self.home / "stack.json"

    @property
    def secrets_file(self) -> Path:
        return self.home / "secrets.json"

    def secrets(self) -> dict[str, str]:
        """Generated once per deployment; mode 0600 (read once per ``Stack``)."""
        if self._secrets is None:
            self._secrets = self._load_secrets()
        return self._secrets

    def _load_secrets(self) -> dict[str, str]:
        stored = json.loads(self.secrets_file.read_text()) if self.secrets_file.exists() else {}
        values = {
            "jwt_secret": secrets.token_urlsafe(32),
            "api_secret_key": secrets.token_urlsafe(32),
            "fernet_key": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
            "airflow_admin_password": secrets.token_urlsafe(16),
            "airflow_viewer_password": secrets.token_urlsafe(16),
            "mlflow_admin_password": secrets.token_urlsafe(16),
            "mlflow_pipelines_password": secrets.token_urlsafe(16),
            "mlflow_flask_secret": secrets.token_urlsafe(32),
            "aws_access_key_id": "local-" + secrets.token_hex(8),
            "aws_secret_access_key": secrets.token_urlsafe(24),
        }
        if stored.keys() >= values.keys():
            return stored
        values.update(stored)  # keep what exists, add what a newer version needs
        self._private_home()
        tmp = self.secrets_file.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(values, fh, indent=2)
        os.replace(tmp, self.secrets_file)
        return values

    def _private_home(self) -> None:
        """The state folder (secrets, logs, configs) is readable by its owner only."""
        self.home.mkdir(parents=True, exist_ok=True)
        os.chmod(self.home, 0o700)

    def db_url(self, suffix: str) -> str:
        return f"{self.postgres}/{self.name}_{suffix}"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['api']}"

    @property
    def mlflow_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['mlflow']}"

    @property
    def s3_endpoint(self) -> str:
        return self.extra_env.get("AWS_ENDPOINT_URL") or f"http://127.0.0.1:{self.ports['s3']}"

    @property
    def data_root(self) -> str:
        return f"s3://{self.bucket}/prod"

    # ---- environment

    def env(self) -> dict[str, str]:
        """Environment of every Airflow process and task (tasks inherit the worker's)."""
        s = self.secrets()
        home = self.home / "airflow"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "MLFLOW_", "PIPELINES_"))}
        env.update(
            {
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
                "AIRFLOW_HOME": str(home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
                "AIRFLOW__CORE__HOSTNAME_CALLABLE": "pipelines.core.workers.worker_hostname",
                "AIRFLOW__CORE__FERNET_KEY": s["fernet_key"],
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.db_url("airflow"),
                "AIRFLOW__CELERY__BROKER_URL": f"{self.redis}/{self.redis_db}",
                "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + self.db_url("airflow"),
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.ports["api"]),
                "AIRFLOW__API__BASE_URL": self.api_url,
                "AIRFLOW__API__SECRET_KEY": s["api_secret_key"],
                "AIRFLOW__API_AUTH__JWT_SECRET": s["jwt_secret"],
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.api_url}/execution/",
                # Authentication on, named users with roles; no all-admins mode.
                "AIRFLOW__CORE__AUTH_MANAGER": (
                    "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
                ),
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN}:admin,viewer:viewer",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
                # Storage and MLflow, through the prod profile; credentials from here only.
                "PIPELINES_PROFILE": "prod",
                "PIPELINES_DATA_ROOT": self.data_root,
                "AWS_ENDPOINT_URL": self.s3_endpoint,
                "AWS_ACCESS_KEY_ID": s["aws_access_key_id"],
                "AWS_SECRET_ACCESS_KEY": s["aws_secret_access_key"],
                "AWS_DEFAULT_REGION": "us-east-1",
                "MLFLOW_TRACKING_URI": self.mlflow_url,
                # The tasks' own MLflow account, not the admin (see start_mlflow).
                "MLFLOW_TRACKING_USERNAME": PIPELINE_USER,
                "MLFLOW_TRACKING_PASSWORD": s["mlflow_pipelines_password"],
                "GX_ANALYTICS_ENABLED": "False",
                "NO_PROXY": "127.0.0.1,localhost",
                "no_proxy": "127.0.0.1,localhost",
            }
        )
        env.update(self.extra_env)
        return env

    # ---- lifecycle

    @contextlib.contextmanager
    def _admin_cursor(self) -> Iterator[Any]:
        """A cursor on the server's ``postgres`` database, autocommit (CREATE/DROP DATABASE need it)."""
        import psycopg2

        conn = psycopg2.connect(self.postgres.replace("postgresql+psycopg2://", "postgresql://") + "/postgres")
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                yield cur
        finally:
            conn.close()

    def create_databases(self, fresh: bool = False) -> None:
        """The Airflow, MLflow and MLflow-auth databases (``fresh``: drop them first)."""
        if fresh:
            self.drop_databases()
        with self._admin_cursor() as cur:
            for suffix in DATABASES:
                db = f"{self.name}_{suffix}"
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,))
                if cur.fetchone() is None:
                    cur.execute(f'CREATE DATABASE "{db}"')

    def drop_databases(self) -> None:
        with self._admin_cursor() as cur:
            for suffix in DATABASES:
                cur.execute(f'DROP DATABASE IF EXISTS "{self.name}_{suffix}" WITH (FORCE)')

    def _spawn(self, key: str, cmd: list[str], env: dict[str, str]) -> subprocess.Popen:
        logs = self.home / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        with open(logs / f"{key}.log", "ab") as log:
            proc = subprocess.Popen(
                cmd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        import psutil

        state = self._state()
        # The start time tells our process from a later one that reused its pid.
        state.setdefault("pids", {})[key] = [proc.pid, psutil.Process(proc.pid).create_time()]
        self.state_file.write_text(json.dumps(state, indent=2))
        return proc

    def _state(self) -> dict[str, Any]:
        return json.loads(self.state_file.read_text()) if self.state_file.exists() else {}

    def _wait(self, what: str, ok: Any, proc: subprocess.Popen | None, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ok():
                return
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"{what} exited with {proc.returncode}; see {self.home / 'logs'}")
            time.sleep(0.5)
        raise RuntimeError(f"{what} did not come up within {timeout:.0f}s; see {self.home / 'logs'}")

    def start_s3(self) -> None:
        """moto's S3 server on loopback, unless ``AWS_ENDPOINT_URL`` names a real endpoint; then the bucket."""
        env = self.env()
        if "AWS_ENDPOINT_URL" not in self.extra_env:
            proc = self._spawn("s3", [_bin("moto_server"), "-H", "127.0.0.1", "-p", str(self.ports["s3"])], env)
            self._wait("the S3 server", lambda: status(f"{self.s3_endpoint}/moto-api/") == 200, proc, 60)
        import boto3

        s3 = boto3.client(
            "s3",
            endpoint_url=self.s3_endpoint,
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            region_name="us-east-1",
        )
        try:
            s3.create_bucket(Bucket=self.bucket)
        except s3.exceptions.BucketAlreadyOwnedByYou:
            pass

    def start_mlflow(self) -> None:
        """``mlflow server`` with the basic-auth app, PostgreSQL stores and artifacts proxied to S3."""
        s = self.secrets()
        ini = self.home / "mlflow_auth.ini"
        ini.touch(mode=0o600)
        ini.write_text(
            "[mlflow]\n"
            "default_permission = READ\n"
            f"database_uri = {self.db_url('mlflow_auth')}\n"
            f"admin_username = {ADMIN}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        )
        env = self.env()
        env.update(
            {
                "MLFLOW_AUTH_CONFIG_PATH": str(ini),
                "MLFLOW_AUTH_ADMIN_PASSWORD": s["mlflow_admin_password"],
                "MLFLOW_FLASK_SERVER_SECRET_KEY": s["mlflow_flask_secret"],
                "MLFLOW_S3_ENDPOINT_URL": self.s3_endpoint,
            }
        )
        port = self.ports["mlflow"]
        cmd = [
            _bin("mlflow"),
            "server",
            "--backend-store-uri",
            self.db_url("mlflow"),
            "--serve-artifacts",
            "--artifacts-destination",
            f"s3://{self.bucket}/mlflow-artifacts",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "2",
            "--app-name",
            "basic-auth",
            "--allowed-hosts",
            f"127.0.0.1:{port},localhost:{port}",
        ]
        proc = self._spawn("mlflow", cmd, env)
        self._wait("the MLflow server", lambda: status(f"{self.mlflow_url}/health") == 200, proc, 180)
        # The tasks' account, created by the admin (it then owns what it creates); kept if it exists.
        try:
            self.mlflow_admin(
                "/api/2.0/mlflow/users/create", {"username": PIPELINE_USER, "password": s["mlflow_pipelines_password"]}
            )
        except urllib.error.HTTPError as exc:
            if b"RESOURCE_ALREADY_EXISTS" not in exc.read():
                raise

    def mlflow_admin(self, path: str, body: Any = None) -> Any:
        """A call to the MLflow server's REST API as its admin (basic auth); the decoded JSON."""
        auth = basic_auth(ADMIN, self.secrets()["mlflow_admin_password"])
        return call(f"{self.mlflow_url}{path}", body, headers=auth, timeout=30)

    def start_airflow(self) -> None:
        """Migrate, then the api-server, scheduler, dag-processor, triggerer and the Celery workers."""
        env = self.env()
        home = Path(env["AIRFLOW_HOME"])
        home.mkdir(parents=True, exist_ok=True)
        passwords = home / "passwords.json"
        if not passwords.exists():
            # Every user's password set here: Airflow would otherwise generate
            # the missing ones and print them in the api-server's log.
            s = self.secrets()
            fd = os.open(passwords, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                json.dump({ADMIN: s["airflow_admin_password"], "viewer": s["airflow_viewer_password"]}, fh)
        subprocess.run([_bin("airflow"), "db", "migrate"], env=env, check=True, capture_output=True, timeout=600)
        procs = {}
        for component in COMPONENTS:
            args = [component, *(["--skip-serve-logs"] if component == "triggerer" else [])]
            procs[component] = self._spawn(component, [_bin("airflow"), *args], env)
        for i in range(self.workers):
            name = f"worker-{chr(ord('a') + i)}"
            wenv = {
                **env,
                "PIPELINES_WORKER_NAME": name,
                # Two workers on one machine: each serves its task logs on its own port.
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(self.ports[f"log_{i}"]),
            }
            cmd = [_bin("airflow"), "celery", "worker", "--celery-hostname", f"{name}@%h", "--concurrency", "2"]
            procs[name] = self._spawn(name, cmd, wenv)
        self._wait("the Airflow api-server", lambda: status(f"{self.api_url}/api/v2/monitor/health") == 200, None)
        for key, proc in procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"airflow {key} exited with {proc.returncode}; see {self.home / 'logs'}")

    def up(self, fresh: bool = False) -> None:
        if not self.ports:
            names = ["api", "mlflow", "s3", *(f"log_{i}" for i in range(self.workers))]
            self.ports = dict(zip(names, free_ports(len(names)), strict=True))
        self._private_home()
        state = {
            "name": self.name,
            "ports": self.ports,
            "redis_db": self.redis_db,
            "workers": self.workers,
            "extra_env": self.extra_env,
            "pids": {},
        }
        self.state_file.write_text(json.dumps(state, indent=2))
        self.create_databases(fresh=fresh)
        self.start_s3()
        self.start_mlflow()
        self.start_airflow()

    def processes(self, key: str) -> list[Any]:
        """The live process ``key`` started by this stack and all its descendants (empty when gone)."""
        import psutil

        pid, started = self._state().get("pids", {}).get(key, [None, None])
        try:
            proc = psutil.Process(pid)
            if abs(proc.create_time() - started) > 1:
                return []  # the pid now belongs to another process
            return [proc, *proc.children(recursive=True)]
        except (psutil.NoSuchProcess, TypeError, ValueError):
            return []

    def kill(self, key: str, sig: int = signal.SIGKILL) -> int:
        """Signal a component and its whole tree: Airflow runs each task in its own process group."""
        import psutil

        procs = self.processes(key)
        for p in procs:
            try:
                p.send_signal(sig)
            except psutil.NoSuchProcess:
                pass
        return len(procs)

    def down(self) -> None:
        """Stop every process this stack started, with their trees (the workers' running tasks too)."""
        import psutil

        keys = list(self._state().get("pids", {}))
        trees = {key: self.processes(key) for key in keys}
        for key in keys:
            self.kill(key, signal.SIGTERM)
        procs = [p for tree in trees.values() for p in tree]
        _, alive = psutil.wait_procs(procs, timeout=30)
        for p in alive:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        if self.state_file.exists():
            state = self._state()
            state["pids"] = {}
            self.state_file.write_text(json.dumps(state, indent=2))

    @classmethod
    def load(cls, home: Path) -> Stack:
        state = json.loads((home / "stack.json").read_text())
        return cls(
            home=home,
            name=state["name"],
            ports=state["ports"],
            redis_db=state.get("redis_db", 5),
            workers=state.get("workers", 2),
            extra_env=state.get("extra_env", {}),
        )

    # ---- driving it

    def airflow(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
        proc = subprocess.run([_bin("airflow"), *args], env=self.env(), capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise RuntimeError(f"`airflow {' '.join(args)}` failed:\n{proc.stderr[-3000:]}")
        return proc

    @property
    def rest(self) -> AirflowApi:
        """Airflow's REST API (v2) as the admin user, logged in once per ``Stack``."""
        if self._api is None:
            self._api = AirflowApi(self.api_url, ADMIN, self.secrets()["airflow_admin_password"])
        return self._api

    def api(self, path: str, method: str | None = None, body: Any = None) -> Any:
        """A call to Airflow's REST API as the admin user; the decoded JSON."""
        return self.rest(path, method, body)

    def wait_runs(self, dag_id: str, count: int, timeout: float = 600) -> list[dict]:
        """Wait until ``dag_id`` has at least ``count`` runs and all have finished; returns them."""
        deadline = time.monotonic() + timeout
        runs: list[dict] = []
        while time.monotonic() < deadline:
            runs = self.rest.runs(dag_id)
            if len(runs) >= count and all(r["state"] in ("success", "failed") for r in runs):
                return runs
            time.sleep(3)
        raise RuntimeError(f"{dag_id}: runs not finished within {timeout:.0f}s: {[r['state'] for r in runs]}")

    def task_instances(self, dag_id: str, run_id: str = "~") -> list[dict]:
        return self.rest.task_instances(dag_id, run_id)

    def api_token(self, user: str = ADMIN, password: str | None = None) -> str:
        """A fresh bearer token from the api-server (``POST /auth/token``)."""
        return AirflowApi(self.api_url, user, password or self.secrets()["airflow_admin_password"]).login()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["up", "down", "drop"], help="drop: down, then drop its databases")
    parser.add_argument("--home", default=str(PROJECT_ROOT / ".prod"), help="state folder (default .prod/)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--name", default="pipelines_prod", help="prefix of its PostgreSQL databases")
    parser.add_argument("--redis-db", type=int, default=5, help="Redis database of the Celery broker")
    parser.add_argument("--fresh", action="store_true", help="drop and recreate its databases first")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="extra environment for every process"
    )
    args = parser.parse_args(argv)
    home = Path(args.home)
    if args.command in ("down", "drop"):
        if not (home / "stack.json").exists():
            print(f"no prod stack in {home}")
            return 0
        stack = Stack.load(home)
        stack.down()
        if args.command == "drop":
            stack.drop_databases()
            print(f"prod stack in {home} stopped, databases {stack.name}_* dropped")
        else:
            print(f"prod stack in {home} stopped (databases {stack.name}_* kept; `drop` removes them)")
        return 0
    extra = dict(item.split("=", 1) for item in args.set)
    stack = Stack(home=home, workers=args.workers, name=args.name, redis_db=args.redis_db, extra_env=extra)
    running = Stack.load(home) if (home / "stack.json").exists() else None
    if running and any(running.processes(key) for key in running._state().get("pids", {})):
        print(f"a prod stack already runs from {home}: `make down-prod` first", file=sys.stderr)
        return 1
    try:
        stack.up(fresh=args.fresh)
    except Exception:
        stack.down()
        raise
    print(
        f"prod stack up ({stack.workers} Celery workers):\n"
        f"  Airflow UI/API  {stack.api_url}  user {ADMIN}, password in {stack.secrets_file}\n"
        f"  MLflow          {stack.mlflow_url}  user {ADMIN}, password in {stack.secrets_file}\n"
        f"  S3 endpoint     {stack.s3_endpoint}  bucket {stack.bucket}\n"
        f"  logs            {home / 'logs'}\n"
        "`make down-prod` stops it."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
