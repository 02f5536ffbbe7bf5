"""Alert messages and their targets, without sending (tests/integration/test_alerts.py sends them)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from pipelines.core import alerts
from pipelines.core.config import AlertsConfig


def test_a_halt_message_carries_its_figures_and_links_and_escapes_what_the_data_wrote():
    summary = {
        "landed_rows": 844,
        "quarantined_rows": 12,
        "quarantine_rate": 0.0142,
        "rules_failed": ["schema:<script>", "carrier_known"],
        "quarantined_files": ["a.csv"],
        "report": "file:///data/reports/ds=2013-01-03/validation.json",
        "report_html": "file:///data/reports/ds=2013-01-03/validation.html",
    }
    alert = alerts.contract_halt(
        "flights",
        "2013-01-03",
        summary,
        ["schema:<script>"],
        readers=["flights_delay"],
        log_url="http://127.0.0.1:8080/dags/ingest_flights/runs/r|1&x/tasks/validate_partition?try_number=1",
    )
    text, body = alert.text(), alert.html()
    assert "*flights* `2013-01-03`" in text and "landed rows: 844" in text and "quarantine rate: 0.0142" in text
    assert "schema:&lt;script&gt;" in text and "<script>" not in text
    assert "<script>" not in body and "schema:&lt;script&gt;" in body
    # Slack link syntax <url|label>: a '|' or '>' inside the URL must not end it.
    assert "<http://127.0.0.1:8080/dags/ingest_flights/runs/r%7C1&amp;x/tasks/" in text
    assert alert.links["report"] == summary["report_html"]
    assert (
        alert.subject()
        == "[error] flights 2013-01-03: delivery halted by its contract (schema:<script>): nothing published"
    )
    assert alert.as_dict()["figures"]["unreadable files"] == 1


def test_a_gate_message_names_each_criterion_with_its_figures_and_says_which_way_it_went():
    decision = {
        "candidate": "2",
        "champion": "1",
        "passed": False,
        "promoted": False,
        "failed": ["min_change:roc_auc"],
        "holdout_rows": 6100,
        "criteria": [
            {"name": "floor:roc_auc", "passed": True, "value": 0.6901, "bound": 0.58, "direction": ">="},
            {"name": "min_change:roc_auc", "passed": False, "gain": 0.0, "required_absolute": 0.002, "seed": 1},
        ],
    }
    alert = alerts.gate_decision("m", decision, partition="2013-01-31", log_url=None, run_url="runs:/abc")
    assert alert.headline == "gate: rejected v2; v1 stays champion" and alert.severity == "warning"
    assert alert.figures["floor:roc_auc"] == "pass value=0.6901 bound=0.58"
    assert alert.figures["min_change:roc_auc"] == "FAIL gain=0 required_absolute=0.002"
    assert alert.figures["failed"] == ["min_change:roc_auc"] and alert.links == {"challenger run": "runs:/abc"}
    promoted = alerts.gate_decision("m", {**decision, "passed": True, "promoted": True, "failed": []}, **_no_links())
    assert promoted.headline == "gate: promoted v2 over v1" and promoted.severity == "info"
    shadow = alerts.gate_decision("m", {**decision, "passed": True, "failed": []}, **_no_links())
    assert shadow.headline == "gate: v2 passed; starts in shadow beside v1"


def _no_links() -> dict:
    return {"partition": None, "log_url": None, "run_url": None}


def test_text_that_looks_like_a_template_stays_text_and_long_values_are_cut():
    alert = alerts.task_failed(
        "m", "d", "t", partition=None, error="{{ conn.alerts_webhook.password }} " + "x" * 2000, tries=3, log_url=None
    )
    assert "{{ conn.alerts_webhook.password }}" in alert.text()
    assert len(alert.figures["error"]) <= 250
    assert "partition" not in alert.subject() and alert.figures["tries"] == 3


def test_targets_are_each_configured_once_and_only_for_the_events_asked():
    from pipelines_airflow.alerting import targets

    a = AlertsConfig.model_validate({"webhook": {}, "email": {"to": ["a@x.org"]}})
    b = AlertsConfig.model_validate({"webhook": {}, "email": {"to": ["b@x.org", "a@x.org"]}, "events": ["rollback"]})
    other = AlertsConfig.model_validate({"webhook": {"conn_id": "team_b"}})
    found = {t.label: t for t in targets([a, b, other], "rollback")}
    assert set(found) == {"webhook:alerts_webhook", "email:alerts_smtp", "webhook:team_b"}
    assert found["email:alerts_smtp"].to == ("a@x.org", "b@x.org")
    assert {t.label for t in targets([b], "contract_halt")} == set()
    assert not AlertsConfig().wants("contract_halt") and a.wants("contract_halt") and not b.wants("drift_fired")


@pytest.mark.parametrize(
    "doc",
    [
        {"email": {"to": []}},
        {"email": {"to": ["not an address"]}},
        {"email": {"to": ["a@b.c, evil@x.org"]}},
        {"webhook": {"conn_id": "https://hooks.slack.com/services/T/B/secret"}},
        {"events": ["everything"]},
        {"deadlines": {"validated_within_minutes": 0}},
        {"webhook": {"conn_id": "x", "url": "https://hooks.example/abc"}},
    ],
)
def test_an_alerts_config_that_would_leak_a_secret_or_cannot_be_delivered_is_refused(doc):
    with pytest.raises(ValidationError):
        AlertsConfig.model_validate(doc)


def test_a_rollback_outside_airflow_is_handed_to_the_installed_sender(monkeypatch):
    sent = []
    monkeypatch.setattr(
        "pipelines_airflow.alerting.send_one", lambda config, alert: sent.append(alert) or {"x": "sent"}
    )
    config = AlertsConfig.model_validate({"webhook": {}})
    alert = alerts.rollback("m", {"champion": "1", "previous": "2", "why": "rollback: bad"}, run_url=None)
    assert alerts.dispatch(config, alert) == {"x": "sent"}
    assert sent == [alert] and alert.headline == "rolled back: v1 is champion again, v2 withdrawn"
    monkeypatch.setattr("pipelines_airflow.alerting.send_one", lambda config, alert: 1 / 0)
    assert alerts.dispatch(config, alert) == {"airflow": "failed: ZeroDivisionError"}
    assert alerts.dispatch(AlertsConfig(), alert) == {}  # no target: nothing to send


def test_a_missed_deadline_of_a_backfill_or_manual_run_is_not_news_and_a_scheduled_one_is():
    import asyncio
    import json

    from pipelines_airflow.alerting import deadline_missed

    kwargs = {"project": "flights", "dag_id": "ingest_flights", "what": "validated", "minutes": 180, "target_specs": []}
    for run_type in ("backfill", "manual", "asset_triggered"):
        context = {"dag_run": {"run_type": run_type, "dag_run_id": "r"}, "deadline": {}}
        assert asyncio.run(deadline_missed(**kwargs, context=context)) == f"skipped: run type {run_type}"
    run = {
        "run_type": "scheduled",
        "dag_run_id": "scheduled__2013-01-02T00:00:00+00:00",
        "logical_date": "2013-01-01T00:00:00Z",
    }
    out = json.loads(
        asyncio.run(
            deadline_missed(**kwargs, context={"dag_run": run, "deadline": {"deadline_time": "2013-01-02T03:00:00"}})
        )
    )
    assert out["alert"]["partition"] == "2013-01-01" and out["alert"]["event"] == "deadline_missed"
    assert out["alert"]["headline"] == "not validated by 2013-01-02T03:00:00 (180 min after its interval ended)"
    assert out["alert"]["links"]["dag run"].endswith(
        "/dags/ingest_flights/runs/scheduled__2013-01-02T00%3A00%3A00%2B00%3A00"
    )


@pytest.mark.parametrize(
    ("schedule", "longest"),
    [
        ("@daily", "1 day"),
        ("* * * * *", "1 min"),
        ("0 0 * * 1-5", "3 days"),
        ("@monthly", "31 days"),
        ("0 */6 * * *", "6 h"),
    ],
)
def test_a_deadline_counts_from_the_end_of_the_longest_interval_of_the_schedule(schedule, longest):
    import datetime as dt

    from pipelines_airflow.alerting import longest_interval

    amount, unit = longest.split()
    expected = {"day": dt.timedelta(days=1), "days": dt.timedelta(days=1), "min": dt.timedelta(minutes=1)}
    expected |= {"h": dt.timedelta(hours=1)}
    assert longest_interval(schedule) == int(amount) * expected[unit]
