"""The Airflow UI in a real browser, after a demo run: log in, every DAG listed, every run green.

The fixture runs ``python -m pipelines_ops.demo_driver`` (what ``make demo``
runs) on a shorter story, in its own Airflow home, storage root and ports:
``airflow standalone`` (SQLite, LocalExecutor, authentication on with
SimpleAuthManager's generated admin password) and its real scheduler
ingest two faulty January weeks (the halted days are redelivered and
cleared), train and promote a champion, score, ingest two summer weeks
whose drift fires a retraining, score again and backfill two June days. A
second project on the same dataset (``flights_air_time``, a regression)
trains its champion on the same validated January, scores a week of each
window and has its own drift firing and retraining.

Then headless Chromium from Debian (``chromium`` and ``chromium-driver``,
which ``make test`` installs) driven by Selenium with that system driver
(Selenium Manager off, so nothing downloads a browser) logs in through the
login form as a data engineer would, finds every project DAG, and opens each
DAG's runs. The REST API, with the same login, must list only successful
runs for every DAG. Screenshots land in ``tests/.artifacts/`` (git-ignored).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.error
from pathlib import Path

import pytest

from pipelines.core import catalog
from pipelines.core.settings import PROJECT_ROOT
from pipelines_ops.loopback import GENERATED_PASSWORDS, AirflowApi, call, free_ports

# The module's first test sets up the shared demo run (about 12 minutes here, the live days scored one at a time,
# with its own 30-minute limit): past the suite's 15-minute limit per test on a slower day.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(2700)]

ARTIFACTS = PROJECT_ROOT / "tests" / ".artifacts"
# One ingest DAG for the flights dataset feeds two model projects, each with its own three DAGs.
PROJECTS = ("flights_delay", "flights_air_time")
DAG_IDS = ["ingest_flights"] + [f"{kind}_{p}" for p in PROJECTS for kind in ("retrain", "drift", "batch_score")]
# flights_delay's drift challenger starts in shadow (its config says so) and its live gate promotes it; the other
# project promotes its drift challenger at once, so its live gate never runs (it is switched on all the same).
DAG_IDS.append("live_gate_flights_delay")
# The story, shortened: each window is two weeks because training holds the
# last 7 days out and the drift policy pools a week on two days in a row.
DEMO_ARGS = [
    "--start", "2013-01-01", "--end", "2013-01-14",
    "--drift-start", "2013-06-20", "--drift-end", "2013-07-03",
    "--backfill-start", "2013-06-18", "--backfill-end", "2013-06-19",
    "--live-end", "2013-07-18",
]  # fmt: skip
LIVE_DAYS = 15  # 2013-07-04..18: the shadow's looks at 7 and 14 days of age, and a day scored after


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """A finished demo run: its UI url, admin password, stdout and environment. Stops Airflow and MLflow after."""
    home = tmp_path_factory.mktemp("demo")
    port, mlflow_port, log_port, trigger_log_port = free_ports(4)
    # Nothing of the test session's own Airflow, MLflow, storage or proxy settings leaks in.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AIRFLOW_", "MLFLOW_", "PIPELINES_", "AWS_")) and "proxy" not in k.lower()
    }
    env.update(
        AIRFLOW_HOME=str(home / "airflow"),
        PIPELINES_DATA_ROOT=str(home / "data"),
        AIRFLOW__API__PORT=str(port),
        PIPELINES_MLFLOW_UI_PORT=str(mlflow_port),
        # The log servers too: a `make demo` left running holds 8793 and 8794.
        AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=str(log_port),
        AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT=str(trigger_log_port),
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
    )
    driver = [sys.executable, "-m", "pipelines_ops.demo_driver"]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    output = ARTIFACTS / "demo-output.txt"
    try:
        try:
            proc = subprocess.run(
                [*driver, *DEMO_ARGS], env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=1800
            )
        except subprocess.TimeoutExpired as exc:
            # A timed-out run's output comes back as bytes, text=True or not.
            parts = (exc.stdout, exc.stderr)
            output.write_text("".join(p.decode(errors="replace") if isinstance(p, bytes) else p or "" for p in parts))
            raise AssertionError(f"the demo did not finish within 30 minutes; its output is in {output}") from None
        output.write_text(proc.stdout + proc.stderr)
        assert proc.returncode == 0, f"the demo failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        passwords = json.loads((home / "airflow" / GENERATED_PASSWORDS).read_text())
        yield {"url": f"http://127.0.0.1:{port}", "password": passwords["admin"], "stdout": proc.stdout, "env": env}
    finally:
        subprocess.run([*driver, "--down"], env=env, cwd=PROJECT_ROOT, capture_output=True, timeout=300)


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


def _runs(url: str, password: str) -> dict[str, list[dict]]:
    """Every DAG's runs from the REST API, with a token from the same login (each DAG must be switched on)."""
    api = AirflowApi(url, "admin", password)
    runs = {}
    for dag_id in DAG_IDS:
        assert not api(f"/api/v2/dags/{dag_id}")["is_paused"], f"{dag_id} is left paused"
        runs[dag_id] = api.runs(dag_id)
    return runs


def test_after_the_demo_every_dag_is_listed_with_green_runs(demo, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    url, password, stdout = demo["url"], demo["password"], demo["stdout"]
    with pytest.raises(urllib.error.HTTPError) as refused:  # authentication is on
        call(f"{url}/api/v2/dags")
    assert refused.value.code == 401

    runs = _runs(url, password)
    for dag_id in DAG_IDS:
        states = [r["state"] for r in runs[dag_id]]
        assert states and set(states) == {"success"}, f"{dag_id}: {states}"
    # The story ran through the scheduler: backfills, triggers and an asset-triggered retraining.
    kinds = {r["run_type"] for rs in runs.values() for r in rs}
    assert {"backfill", "manual", "asset_triggered"} <= kinds, kinds
    assert len(runs["ingest_flights"]) == 14 + 14 + LIVE_DAYS + 2  # January, summer, the live days, the backfill
    assert len(runs["batch_score_flights_delay"]) == 14 + 14 + LIVE_DAYS + 2
    # One judgement per live day the shadow scored, triggered by the two assets (scores and shadow scores).
    gates = runs["live_gate_flights_delay"]
    assert gates and {r["run_type"] for r in gates} == {"asset_triggered"}
    assert len(runs["batch_score_flights_air_time"]) == 7 + 7  # the last week of each window
    for project in PROJECTS:  # each project's own drift check fired its own retraining, through the asset
        assert "asset_triggered" in {r["run_type"] for r in runs[f"retrain_{project}"]}, project
    assert "Halted:" in stdout and "re-ran them green" in stdout

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
    assert (ARTIFACTS / "airflow-dags.png").stat().st_size > 10_000

    for dag_id in DAG_IDS:
        latest = max(runs[dag_id], key=lambda r: r["run_after"])
        browser.get(f"{url}/dags/{dag_id}/runs")
        _wait_for(
            browser, lambda d, rid=latest["dag_run_id"]: rid in body(d), f"{dag_id}: its latest run is not listed"
        )
        _wait_for(browser, lambda d: "success" in body(d).lower(), f"{dag_id}: no run shown as successful")
        assert "failed" not in body(browser).lower(), f"{dag_id}: a failed run is shown"
        browser.save_screenshot(str(ARTIFACTS / f"airflow-{dag_id}-runs.png"))


def _lineage(demo, ds: str, model: str = "flights_delay") -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "pipelines", "lineage", "--model", model, "--ds", ds, "--json"],
        env=demo["env"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_lineage_of_demo_scored_days_returns_the_full_chain(demo):
    """Scored by the drift-retrained champion (promoted on live evidence after days in shadow), by v1 in the as-of
    backfill, and a day redelivered after a halt."""
    shadowed = _lineage(demo, "2013-07-04")  # the first live day: v1 for BI, v2 in shadow beside it
    assert shadowed["model_version"]["version"] == "1"
    assert [(lane["lane"], lane["model_version"], lane["bi"]) for lane in shadowed["lanes"]] == [
        ("champion", "1", True),
        ("shadow", "2", False),
    ]
    assert "Shadow:     v2 scored in shadow beside v1 on 2013-07-04.." in demo["stdout"]
    last = "2013-07-18"
    summer = _lineage(demo, last)
    assert summer["consistent"] and summer["problems"] == []
    version = summer["model_version"]
    assert version["version"] == "2" and version["trigger"] == "drift" and version["choice"] == "current"
    assert version["mlflow_run_id"] and "champion" in version["aliases"]
    assert [lane["lane"] for lane in summer["lanes"]] == ["champion"]  # promoted: no shadow left
    training = summer["training"]
    assert training["window"] == "2013-06-20..2013-06-26" and training["holdout_window"] == "2013-06-27..2013-07-03"
    assert training["data_fingerprint"].endswith(".dir") and training["contract_version"] == "1.0.0"
    assert training["train_rows"] > 0 and training["holdout_rows"] > 0
    gate = summer["gate"]
    assert gate["decision"] == "promoted" and gate["promoted_from"] == "1" and gate["decision_uri"]
    assert gate["promotion_reason"].startswith("live gate passed on ")
    inp = summer["input"]
    assert inp["validation_status"] == "published" and inp["rows"] == summer["scores"]["rows"] > 0
    assert inp["landed_rows"] == inp["rows"] + inp["quarantined_rows"]
    links = {
        summer["scores"]["uri"]: catalog.scores_file("flights_delay", last),
        summer["scores"]["manifest"]: catalog.scores_manifest("flights_delay", last),
        inp["validated"]: catalog.validated_file("flights", last),
        inp["validation_report"]: catalog.validation_report("flights", last),
    }
    for uri, key in links.items():
        assert uri.startswith("file://") and Path(uri.removeprefix("file://")).is_file(), uri
        assert uri.endswith("/" + key), (uri, key)

    backfilled = _lineage(demo, "2013-06-18")
    assert backfilled["consistent"] and backfilled["model_version"]["version"] == "1"
    assert backfilled["model_version"]["choice"] == "as_of_partition"
    assert backfilled["training"]["window"] == "2013-01-01..2013-01-07"

    redelivered = _lineage(demo, "2013-01-03")  # halted on first delivery (fault: missing column)
    assert redelivered["consistent"] and redelivered["input"]["validation_status"] == "published"
    assert redelivered["input"]["rules_failed"] == [] and redelivered["input"]["rows"] == 914


def test_two_projects_train_gate_score_and_monitor_from_the_one_ingest_dag(demo):
    """flights_air_time reads the partitions ingest_flights validated once; its champion, scores, drift: its own."""
    first, second = _lineage(demo, "2013-07-03"), _lineage(demo, "2013-07-03", "flights_air_time")
    assert second["consistent"] and second["problems"] == []
    # The same validated file, validated once, is the input of both.
    assert second["input"]["validated"] == first["input"]["validated"]
    assert second["input"]["sha256"] == first["input"]["sha256"] and second["input"]["rows"] == first["input"]["rows"]
    # Its own namespace: its registered model, its scores table, its drift reports.
    version = second["model_version"]
    assert version["version"] == "2" and version["trigger"] == "drift" and "champion" in version["aliases"]
    assert second["gate"]["decision"] == "promoted" and second["gate"]["promoted_from"] == "1"
    assert second["scores"]["uri"].endswith("/" + catalog.scores_file("flights_air_time", "2013-07-03"))
    data = Path(demo["env"]["PIPELINES_DATA_ROOT"])
    assert (data / catalog.drift_summary("flights_air_time", "2013-07-03")).is_file()
    import duckdb

    glob = str(data / catalog.parquet_glob(catalog.scores_table("flights_air_time")))
    rows = duckdb.execute(
        "select model_version, count(distinct ds), count(*), min(score), max(score) "
        "from read_parquet(?, hive_partitioning = true) group by model_version order by model_version",
        [glob],
    ).fetchall()
    assert [(v, days) for v, days, *_ in rows] == [("1", 7), ("2", 7)]
    for _, _, n, low, high in rows:  # minutes in the air from NYC: from the shuttle hops to Honolulu
        assert n > 0 and 15 < low < high < 700
    assert "flights_air_time (regression, the same validated flights partitions)" in demo["stdout"]

    # The README's BI query joining the two projects' tables on the same flights.
    import re

    readme = (PROJECT_ROOT / "README.md").read_text()
    bi = readme[readme.index("**BI analyst.**") :]
    join = re.findall(r"```sql\n(.*?)```", bi, re.S)[1].replace("'data/", f"'{data}/")
    joined = duckdb.execute(join).fetchall()
    assert {str(r[0]) for r in joined} == {"2013-01-08", "2013-01-09", "2013-01-10", "2013-01-11", "2013-01-12",
                                           "2013-01-13", "2013-01-14"} | {f"2013-06-{d}" for d in range(27, 31)} | {
        "2013-07-01", "2013-07-02", "2013-07-03"}  # fmt: skip
    assert all(0 < p_late < 1 and 15 < minutes < 700 for _, _, p_late, minutes in joined)


def test_the_readmes_query_names_the_feature_that_most_often_drives_high_scores_on_07_03(demo):
    """flights_delay publishes reasons beside each score; the README's DuckDB query answers from them."""
    import re

    import duckdb
    import pandas as pd

    data = Path(demo["env"]["PIPELINES_DATA_ROOT"])
    readme = (PROJECT_ROOT / "README.md").read_text()
    bi = readme[readme.index("**BI analyst.**") :]
    query = re.findall(r"```sql\n(.*?)```", bi, re.S)[2]
    assert "2013-07-03" in query and "reason_1" in query
    ((feature, flights, avg_log_odds),) = duckdb.connect().execute(query.replace("'data/", f"'{data}/")).fetchall()
    # The oracle: the published file of the day, read with pandas.
    day = pd.read_parquet(data / catalog.scores_file("flights_delay", "2013-07-03"))
    assert {"reason_1", "reason_2", "reason_3", "reason_1_contribution", "reason_method"} <= set(day.columns)
    assert set(day["reason_method"].astype(str)) == {"tree_shap"} and day["reason_1"].notna().all()
    high = day[(day["label"] == 1) & (day["reason_1_contribution"] > 0)]
    counts = high.groupby(high["reason_1"].astype(str)).size().sort_values(ascending=False)
    assert flights == counts.iloc[0] and counts[feature] == flights and avg_log_odds > 0
    print(f"2013-07-03: {feature} drives {flights} of {len(high)} high scores (mean {avg_log_odds:+.3f} log-odds)")


ORACLE = """
import json, sys
import mlflow
from pipelines.core import catalog
from pipelines.core.tracking import client, configure
configure()
c = client()
mv = c.get_model_version_by_alias(sys.argv[1], "champion")
run = c.get_run(mv.run_id)
print(json.dumps({
    "version": str(mv.version),
    "tags": mv.tags,
    "run_tags": run.data.tags,
    "metrics": run.data.metrics,
    "decision": mlflow.artifacts.load_dict(f"runs:/{mv.run_id}/{catalog.GATE_DECISION}"),
    "drift_share": {m.step: m.value for m in c.get_metric_history(mv.run_id, "live_drift_share")},
    "logged_card": mlflow.artifacts.load_text(mv.tags["model_card"]),
}))
"""


def test_the_demo_champions_model_card_has_its_runs_and_its_gates_figures_as_the_readme_shows(demo):
    """The card of the champion the live gate promoted: figures from MLflow (read here apart), and the README's
    excerpt is this card's."""

    def run(*args: str) -> str:
        proc = subprocess.run(args, env=demo["env"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc.stdout

    oracle = json.loads(run(sys.executable, "-c", ORACLE, "flights_delay"))
    v = oracle["version"]
    cli = (sys.executable, "-m", "pipelines", "card", "--model", "flights_delay", "--version", v)
    card = json.loads(run(*cli, "--json"))
    assert card["status"] == "champion" and card["version"] == v == "2"
    assert card["training"]["window"] == oracle["run_tags"]["training_window"]
    assert card["training"]["data_fingerprint"] == oracle["run_tags"]["data_fingerprint"]
    assert card["training"]["contract_version"] == oracle["run_tags"]["contract_version"]
    for name, m in card["holdout"]["metrics"].items():
        assert m["value"] == oracle["metrics"][f"holdout_{name}"] and m["low"] <= m["value"] <= m["high"]
    assert [(k["name"], k["passed"]) for k in card["gate"]["criteria"]] == [
        (k["name"], k["passed"]) for k in oracle["decision"]["criteria"]
    ]
    assert card["live_gate"]["verdict"] == "promote"  # promoted on live evidence, as the lineage says
    # Live days are the drift checks logged on its run as champion (none in the demo after the promotion).
    assert (card["live"] or {}).get("days", 0) == len(oracle["drift_share"])
    # What the status change logged with the version is this card (live days are added since).
    assert oracle["logged_card"].startswith(f"# Model card: flights_delay v{v} (champion)")
    # The README's walkthrough shows this card, from `make demo`: every line of its excerpt is a line of the card
    # here, numbers aside (this shortened demo trains v2 on a shorter window, so its figures are its own).
    import re

    def shape(line: str) -> str:
        return re.sub(r"\d+", "#", re.sub(r"\b[0-9a-f]{32}\b", "<md5>", line))

    readme = (PROJECT_ROOT / "README.md").read_text()
    section = readme[readme.index("## Model cards") :]
    excerpt = section[section.index("```markdown\n") + 12 : section.index("```", section.index("```markdown\n") + 12)]
    rendered = {shape(ln) for ln in run(*cli).splitlines()}
    lines = [ln for ln in excerpt.splitlines() if ln.strip() and ln.strip() != "..."]
    assert len(lines) > 10 and [ln for ln in lines if shape(ln) not in rendered] == []


def test_the_scheduler_forks_tasks_from_workers_that_preloaded_the_libraries(demo):
    """The local profile's workers start from a forkserver that imported ``pipelines_ops.preload``, cleanly."""
    log = (Path(demo["env"]["AIRFLOW_HOME"]) / "standalone.log").read_text(errors="replace")
    assert "Set multiprocessing start method to 'forkserver' for scheduler" in log
    assert "Set forkserver preload modules for scheduler: ['pipelines_ops.preload']" in log
    # Printed by the forkserver itself once it has imported them (Airflow's lines above come before it starts).
    took = re.findall(r"pipelines_ops\.preload: (\d+)/(\d+) modules imported", log)
    assert took, "the forkserver never ran pipelines_ops.preload"
    assert all(done == listed for done, listed in took), f"a preloaded library failed to import: {took}"
    assert "preload: " not in log.replace("pipelines_ops.preload: ", ""), "the preload logged a failure"
