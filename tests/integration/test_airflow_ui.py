"""The Airflow UI in a real browser: log in, see the DAGs and a green run, save a screenshot.

Headless Chromium from Debian (``chromium`` and ``chromium-driver``, which
``make setup`` installs) driven by Selenium with that system driver;
Selenium Manager is switched off, so nothing downloads a browser. The test
runs the ingest DAG once (a seeded day), starts ``airflow api-server`` on
the session's metadata DB with authentication on (SimpleAuthManager, named
users, a known password), then logs in through the login form as a data
engineer would, finds every project DAG listed and the run green. The
screenshots land in ``tests/.artifacts/`` (git-ignored).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from pipelines.settings import PROJECT_ROOT

pytestmark = pytest.mark.integration

ARTIFACTS = PROJECT_ROOT / "tests" / ".artifacts"
DAG_IDS = ["ingest_flights_delay", "retrain_flights_delay", "drift_flights_delay", "batch_score_flights_delay"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _status(url: str) -> int | None:
    try:
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(url, timeout=2) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return None


@pytest.fixture
def green_run(airflow_db, dag_root, load_dag):
    """One successful ingest run (a clean seeded day) in the session's metadata DB."""
    from pipelines.config import load_project
    from pipelines.demo import seed_demo

    seed_demo(load_project("flights_delay"), "2013-01-02", "2013-01-02")
    run = load_dag("ingest.py", "ingest_flights_delay").test(logical_date=dt.datetime(2013, 1, 2, tzinfo=dt.UTC))
    assert str(run.state) == "success"
    return run


@pytest.fixture
def api_server(airflow_db, tmp_path):
    """``airflow api-server`` with authentication on; yields (url, admin password)."""
    password = secrets.token_urlsafe(12)
    passwords = tmp_path / "passwords.json"
    passwords.write_text(json.dumps({"admin": password, "viewer": secrets.token_urlsafe(12)}))
    port = _free_port()
    env = {
        **os.environ,
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,viewer:viewer",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "NO_PROXY": "127.0.0.1,localhost",
    }
    log_path = tmp_path / "api-server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("airflow")), "api-server"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while _status(f"{url}/api/v2/monitor/health") != 200:
            assert proc.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, "the api-server did not answer within 120 s"
            time.sleep(0.5)
        yield url, password
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def browser(system_chromium, monkeypatch):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager must not fetch anything
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    binary, driver = system_chromium
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(arg)
    options.add_argument("--no-proxy-server")
    chrome = webdriver.Chrome(service=Service(executable_path=driver), options=options)
    chrome.set_page_load_timeout(60)
    try:
        yield chrome
    finally:
        chrome.quit()


def _wait_for(chrome, condition, what: str, timeout: float = 60):
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(chrome, timeout).until(condition)
    except Exception:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        chrome.save_screenshot(str(ARTIFACTS / "airflow-ui-failure.png"))
        raise AssertionError(f"{what}; page text: {chrome.find_element('tag name', 'body').text[:1500]!r}") from None


def test_a_data_engineer_logs_in_and_sees_the_dags_and_a_green_run(green_run, api_server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    url, password = api_server
    browser.get(url)  # not logged in: the UI sends the browser to the login form
    username = _wait_for(browser, lambda d: d.find_element(By.NAME, "username"), "no login form")
    username.send_keys("admin")
    browser.find_element(By.NAME, "password").send_keys(password + Keys.ENTER)
    _wait_for(browser, lambda d: "/login" not in d.current_url, "the login did not go through")

    browser.get(f"{url}/dags")
    body = lambda d: d.find_element(By.TAG_NAME, "body").text  # noqa: E731
    _wait_for(browser, lambda d: all(dag in body(d) for dag in DAG_IDS), "not every DAG is listed")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "airflow-dags.png"))

    browser.get(f"{url}/dags/ingest_flights_delay/runs")
    _wait_for(browser, lambda d: green_run.run_id in body(d), "the ingest run is not listed")
    _wait_for(browser, lambda d: "success" in body(d).lower(), "the run is not shown as successful")
    browser.save_screenshot(str(ARTIFACTS / "airflow-ingest-runs.png"))
    assert (ARTIFACTS / "airflow-dags.png").stat().st_size > 10_000
