"""Alerts through Airflow's notifiers to a real local HTTP receiver and a real local SMTP server.

The DAGs run with ``dag.test()`` (tasks, callbacks and notifiers are Airflow's
own); the targets are Airflow connections given as ``AIRFLOW_CONN_*``, as a
deployment would give them. Each event must arrive exactly once per target,
with the figures the pipeline's own records hold and links that lead to them:
the report file, the MLflow run on a running tracking server, the task try in
the metadata DB.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import threading
import time
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
import yaml

from pipelines.core import catalog

pytestmark = pytest.mark.integration

BASE_URL = "http://127.0.0.1:8080"


class Receivers:
    """What the webhook and the SMTP server were sent, as they were sent."""

    def __init__(self) -> None:
        self.posts: list[dict] = []
        self.mails: list = []
        self.status = 200

    def clear(self) -> None:
        self.posts.clear()
        self.mails.clear()
        self.status = 200

    def of(self, event: str) -> tuple[list[str], list]:
        texts = [p["text"] for p in self.posts if f"({event}):" in p["text"]]
        mails = [m for m in self.mails if f"&middot; {event} &middot;" in _body(m)]
        return texts, mails


def _body(mail) -> str:
    parts = [p for p in mail.walk() if p.get_content_type() == "text/html"]
    return parts[0].get_payload(decode=True).decode() if parts else ""


@pytest.fixture(scope="module")
def receivers():
    """A Slack-compatible webhook (HTTP) and an SMTP server on loopback, for the module."""
    from aiosmtpd.controller import Controller

    from pipelines_ops.loopback import free_ports

    got = Receivers()

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if got.status == 200:
                got.posts.append(json.loads(body))
            self.send_response(got.status)
            self.end_headers()
            self.wfile.write(b"ok" if got.status == 200 else b"invalid_token")

        def log_message(self, *args):
            pass

    class Mailbox:
        async def handle_DATA(self, server, session, envelope):
            got.mails.append(message_from_bytes(envelope.original_content or envelope.content))
            return "250 OK"

    http_port, smtp_port = free_ports(2)
    http = ThreadingHTTPServer(("127.0.0.1", http_port), Hook)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    smtp = Controller(Mailbox(), hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    got.env = {
        "AIRFLOW_CONN_ALERTS_WEBHOOK": json.dumps(
            {"conn_type": "slackwebhook", "password": f"http://127.0.0.1:{http_port}/services/T0/B0/test"}
        ),
        "AIRFLOW_CONN_ALERTS_SMTP": json.dumps(
            {
                "conn_type": "smtp",
                "host": "127.0.0.1",
                "port": smtp_port,
                "extra": {"disable_ssl": True, "disable_tls": True, "from_email": "airflow@example.com", "timeout": 10},
            }
        ),
    }
    yield got
    smtp.stop()
    http.shutdown()


@pytest.fixture
def alerting(receivers, monkeypatch):
    receivers.clear()
    for key, value in receivers.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", BASE_URL)
    return receivers


def _one_each(got: Receivers, event: str) -> tuple[str, str, dict]:
    """The one webhook text and the one e-mail body of ``event`` (and the mail's headers)."""
    texts, mails = got.of(event)
    assert len(texts) == 1, f"{event}: {len(texts)} webhook messages: {got.posts}"
    assert len(mails) == 1, f"{event}: {len(mails)} e-mails: {[m['Subject'] for m in got.mails]}"
    return texts[0], _body(mails[0]), dict(mails[0].items())


def _link(text: str, name: str) -> str:
    """The URL of the named link line of a Slack message (``• name: <url|label>``)."""
    [line] = [ln for ln in text.splitlines() if ln.startswith(f"• {name}: <")]
    return line.split("<", 1)[1].split("|", 1)[0].replace("&amp;", "&")


def _figure(text: str, name: str) -> str:
    [line] = [ln for ln in text.splitlines() if ln.startswith(f"• {name}: ")]
    return line.split(": ", 1)[1].replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _task_try_of(url: str) -> tuple[str, str, str, int]:
    """The task try a task-log link names, checked to exist in the metadata DB."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    parsed = urlparse(url)
    assert url.startswith(BASE_URL + "/dags/"), url
    _, _, dag_id, _, run_id, _, task_id = parsed.path.split("/")[:7]
    try_number = int(parsed.query.removeprefix("try_number="))
    run_id = unquote(run_id)
    with create_session() as session:
        ti = session.query(TaskInstance).filter_by(dag_id=dag_id, run_id=run_id, task_id=task_id).one()
        assert ti.try_number == try_number
    return dag_id, run_id, task_id, try_number


def test_a_contract_halt_sends_one_message_and_one_email_with_its_rules_rows_report_and_log(
    airflow_db, dag_root, load_dag, task_states, alerting
):
    from pipelines.core.config import load_project
    from pipelines_ops.demo_data import seed_demo

    seed_demo(load_project("flights_delay"), "2013-01-03", "2013-01-03", inject_faults=True)  # a file missing a column
    run = load_dag("ingest.py", "ingest_flights").test(logical_date=dt.datetime(2013, 1, 3, tzinfo=dt.UTC))
    assert task_states(run)["validate_partition"] == "failed"
    report = json.loads((dag_root / catalog.validation_report("flights", "2013-01-03")).read_text())["summary"]
    assert report["status"] == "halted"

    text, body, mail = _one_each(alerting, "contract_halt")
    assert "*flights* `2013-01-03`" in text and "delivery halted by its contract" in text
    assert _figure(text, "halted by") == ", ".join(report["rules_halted"])
    assert _figure(text, "landed rows") == str(report["landed_rows"])
    assert _figure(text, "quarantine rate") == f"{report['quarantine_rate']:.4g}"
    assert _figure(text, "rules failed") == ", ".join(report["rules_failed"])
    assert _figure(text, "model projects waiting") == "flights_air_time, flights_delay"
    assert mail["To"] == "data-platform@example.com" and "2013-01-03" in mail["Subject"]
    assert f"<td>{report['landed_rows']}</td>" in body
    # The report link opens the day's report; the log link names the try that halted.
    html_report = Path(urlparse(_link(text, "report")).path)
    assert html_report == dag_root / catalog.validation_html("flights", "2013-01-03") and html_report.is_file()
    assert _task_try_of(_link(text, "task log"))[2] == "validate_partition"
    assert _link(text, "report") in body
    # The halt is the alert: the same failure is not alerted a second time as a failed task.
    assert alerting.of("task_failed") == ([], [])


def test_a_task_failing_for_good_sends_its_error_and_its_log(airflow_db, dag_jan_root, load_dag, task_states, alerting):
    # No champion yet: planning fails without retries, a failure retrying cannot fix.
    run = load_dag("batch_score.py", "batch_score_flights_delay").test(
        logical_date=dt.datetime(2013, 1, 28, tzinfo=dt.UTC)
    )
    assert str(run.state) == "failed"
    text, _, _ = _one_each(alerting, "task_failed")
    dag_id, _, task_id, tries = _task_try_of(_link(text, "task log"))
    assert task_states(run)[task_id] == "failed" and dag_id == "batch_score_flights_delay"
    assert "`2013-01-28`" in text and "champion" in _figure(text, "error").lower()
    assert _figure(text, "task") == task_id and _figure(text, "tries") == str(tries)


@pytest.fixture
def mlflow_ui(dag_seasons_root, monkeypatch):
    """``mlflow server`` on the test's tracking store, so that run links in messages can be opened."""
    from pipelines.core.settings import get_settings
    from pipelines_ops.loopback import free_ports, status

    [port] = free_ports(1)
    url = f"http://127.0.0.1:{port}"
    cmd = [str(Path(sys.executable).with_name("mlflow")), "server", "--backend-store-uri"]
    cmd += [get_settings().mlflow_tracking_uri, "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while status(f"{url}/health") != 200:
            assert proc.poll() is None and time.monotonic() < deadline, "mlflow server did not come up"
            time.sleep(1)
        monkeypatch.setenv("PIPELINES_MLFLOW_UI_URL", url)
        yield url
    finally:
        proc.terminate()
        proc.wait(30)


def _opens_run(link: str, ui: str) -> dict:
    """The run a UI link shows, read from the tracking server the link points at."""
    from pipelines_ops.loopback import call, status

    assert link.startswith(f"{ui}/#/experiments/"), link
    experiment, run_id = link.split("/#/experiments/")[1].split("/runs/")
    assert status(link) == 200
    run = call(f"{ui}/api/2.0/mlflow/runs/get?run_id={run_id}", method="GET")["run"]
    assert run["info"]["experiment_id"] == experiment
    return run


def test_a_drift_firing_and_a_gate_rejection_each_send_one_message_and_one_email_with_figures_and_links(
    airflow_db, dag_seasons_root, load_dag, task_states, alerting, mlflow_ui
):
    from pipelines.core.config import load_project
    from pipelines.core.storage import get_storage
    from pipelines.core.tracking import client
    from pipelines.training.gate import run_gate
    from pipelines.training.train import train_challenger

    project = load_project("flights_delay")
    champion = train_challenger(project, "2013-01-31")
    assert run_gate(project)["promoted"]
    alerting.clear()  # the gate above ran outside a DAG: only what the DAGs send is counted

    drift = load_dag("drift.py", "drift_flights_delay").test(run_conf={"ds": "2013-07-01"})
    assert task_states(drift) == {"check_drift": "success", "emit_drift": "success"}
    summary = get_storage().read_json(catalog.drift_summary("flights_delay", "2013-07-01"))
    text, body, _ = _one_each(alerting, "drift_fired")
    assert "*flights_delay* `2013-07-01`" in text and summary["policy_fired"] is True
    assert _figure(text, "drift share") == f"{summary['drift_share']:.4g}"
    assert _figure(text, "drifted features") == ", ".join(summary["drifted_features"])
    assert _figure(text, "rows checked") == str(summary["rows"])
    assert Path(urlparse(_link(text, "report")).path).is_file()
    assert _opens_run(_link(text, "champion run"), mlflow_ui)["info"]["run_id"] == champion["run_id"]
    assert _task_try_of(_link(text, "task log"))[2] == "emit_drift" and _link(text, "champion run") in body

    # The same window again, forced: a challenger no better than the champion, which the gate keeps.
    retrain = load_dag("retrain.py", "retrain_flights_delay").test(run_conf={"end_ds": "2013-01-31", "force": True})
    assert task_states(retrain)["gate"] == "success" and task_states(retrain)["announce_champion"] == "skipped"
    [v2] = [v for v in client().search_model_versions("name='flights_delay'") if str(v.version) == "2"]
    decision = json.loads(Path(client().download_artifacts(v2.run_id, catalog.GATE_DECISION)).read_text())
    assert decision["passed"] is False and decision["failed"]
    text, body, _ = _one_each(alerting, "gate_decision")
    assert "gate: rejected v2; v1 stays champion" in text
    assert _figure(text, "failed") == ", ".join(decision["failed"])
    for crit in decision["criteria"]:
        shown = _figure(text, crit["name"])
        assert shown.startswith("pass" if crit["passed"] else "FAIL"), (crit["name"], shown)
        for key in ("gain", "low", "high", "value", "worst_gain"):
            if isinstance(crit.get(key), float):
                assert f"{key}={crit[key]:.4g}" in shown, (crit["name"], key, shown)
    assert _opens_run(_link(text, "challenger run"), mlflow_ui)["info"]["run_id"] == v2.run_id
    assert _task_try_of(_link(text, "task log"))[2] == "gate"
    assert f"<td>{decision['holdout_rows']}</td>" in body


def test_a_failing_alert_target_never_fails_the_task_and_the_other_target_still_gets_it(
    airflow_db, dag_root, load_dag, task_states, alerting, monkeypatch
):
    from pipelines.core.config import load_project
    from pipelines_ops.demo_data import seed_demo
    from pipelines_ops.loopback import free_ports

    alerting.status = 500  # the webhook refuses
    [closed] = free_ports(1)
    smtp = json.loads(alerting.env["AIRFLOW_CONN_ALERTS_SMTP"])
    monkeypatch.setenv("AIRFLOW_CONN_ALERTS_SMTP", json.dumps({**smtp, "port": closed}))  # nothing listens
    seed_demo(load_project("flights_delay"), "2013-01-01", "2013-01-01", inject_faults=False)
    seed_demo(load_project("flights_delay"), "2013-01-03", "2013-01-03", inject_faults=True)
    ingest = load_dag("ingest.py", "ingest_flights")
    halted = ingest.test(logical_date=dt.datetime(2013, 1, 3, tzinfo=dt.UTC))
    assert task_states(halted)["validate_partition"] == "failed"  # the halt's failure, as without alerts
    assert alerting.posts == [] and alerting.mails == []

    # The webhook back, the mail server still down: the webhook gets it; the day's own outcome stands.
    alerting.status = 200
    again = ingest.test(logical_date=dt.datetime(2013, 1, 3, tzinfo=dt.UTC))
    assert task_states(again)["validate_partition"] == "failed"
    assert len(alerting.of("contract_halt")[0]) == 1 and alerting.mails == []
    good = ingest.test(logical_date=dt.datetime(2013, 1, 1, tzinfo=dt.UTC))
    assert str(good.state) == "success"


def _configs(folder: Path) -> dict[str, str]:
    """This checkout's configs, with a dataset landed each minute and a one-minute validation deadline."""
    from pipelines_ops.scale_data import large_day_configs

    env = large_day_configs(str(folder), shard_bytes=50_000_000, max_shards=1, batch_rows=100_000)
    configs = Path(env["PIPELINES_CONFIG_DIR"])
    dataset = configs / "datasets" / "flights.yaml"
    doc = yaml.safe_load(dataset.read_text())
    today = dt.datetime.now(dt.UTC).date()
    doc["ingest"].update(
        schedule="* * * * *", start_date=str(today), end_date=None, catchup=False,
        sensor_poke_seconds=5, sensor_timeout_minutes=30,
    )  # fmt: skip
    dataset.write_text(yaml.safe_dump(doc, sort_keys=False))
    project = configs / "flights_delay.yaml"
    doc = yaml.safe_load(project.read_text())
    doc["alerts"]["deadlines"] = {"validated_within_minutes": 1}
    project.write_text(yaml.safe_dump(doc, sort_keys=False))
    return env


@pytest.mark.timeout(900)
def test_a_scheduled_day_not_validated_by_its_deadline_is_alerted_once_per_target_with_its_run(
    receivers, tmp_path, monkeypatch
):
    """A late day, seen by Airflow's own scheduler and triggerer (``airflow standalone``).

    This checkout's DAGs run on a copy of the configs where the flights dataset is delivered every
    minute and must be validated within a minute of its interval's end. Nothing is delivered: the
    sensor waits, the scheduler marks the deadline missed and the triggerer runs the callback, which
    sends the message through the webhook and SMTP connections.
    """
    from pipelines_ops import demo_driver
    from pipelines_ops.loopback import GENERATED_PASSWORDS, AirflowApi, free_ports, status

    receivers.clear()
    [port] = free_ports(1)
    home = tmp_path / "airflow"
    for key, value in {
        **_configs(tmp_path),
        **receivers.env,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
        "PIPELINES_DATA_ROOT": str(tmp_path / "data"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db",
    }.items():
        monkeypatch.setenv(key, value)
    env = demo_driver._env()
    demo_driver.start_airflow(env)
    try:
        api = AirflowApi(env["AIRFLOW__API__BASE_URL"], "admin", _password(home / GENERATED_PASSWORDS))
        _unpause(api, "ingest_flights")
        texts = _wait_for(receivers, "deadline_missed", timeout=600)
        runs = {r["dag_run_id"]: r for r in api.runs("ingest_flights")}

        text = texts[0]
        link = text.split("• dag run: <", 1)[1].split("|", 1)[0].replace("&amp;", "&")
        run_id = unquote(urlparse(link).path.split("/runs/", 1)[1])
        run = runs[run_id]
        assert run["run_type"] == "scheduled" and run["state"] != "success"
        assert f"`{run['logical_date'][:10]}`" in text and "*flights*" in text
        assert "not validated by" in text and "1 min after its interval ended" in text
        assert link.startswith(f"{env['AIRFLOW__API__BASE_URL']}/dags/ingest_flights/runs/")
        assert status(link) == 200  # the API server serves the run's page
        # Once per target for that run: the webhook message and the e-mail.
        assert sum(run_id in unquote(t.replace("&amp;", "&")) for t in texts) == 1
        _, mails = receivers.of("deadline_missed")
        assert sum(run_id in unquote(_body(m)) for m in mails) == 1
    finally:
        demo_driver.stop_airflow(env)


def _password(path: Path) -> str:
    deadline = time.monotonic() + 120
    while not path.exists():
        assert time.monotonic() < deadline, f"no {path}"
        time.sleep(2)
    return json.loads(path.read_text())["admin"]


def _unpause(api, dag_id: str) -> None:
    deadline = time.monotonic() + 300
    while True:
        try:
            if api(f"/api/v2/dags/{dag_id}", method="PATCH", body={"is_paused": False})["is_paused"] is False:
                return
        except Exception:
            pass
        assert time.monotonic() < deadline, f"{dag_id} was not parsed"
        time.sleep(3)


def _wait_for(receivers, event: str, timeout: float) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        texts, mails = receivers.of(event)
        if texts and mails:
            time.sleep(5)  # a second message for the same run would arrive with the first
            return receivers.of(event)[0]
        assert time.monotonic() < deadline, f"no {event} alert within {timeout:.0f}s: {receivers.posts}"
        time.sleep(3)
