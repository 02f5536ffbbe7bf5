"""Alerts delivered through Airflow's notifiers: the DAGs' side of :mod:`pipelines.core.alerts`.

The library writes each message (``Alert``: project, partition, headline,
figures, links); this module hands it to Airflow's maintained notifiers, one
per target the project's ``alerts`` config names:

- a Slack-compatible incoming webhook: ``SlackWebhookNotifier`` of
  ``apache-airflow-providers-slack``, through an Airflow connection of type
  ``slackwebhook`` whose password is the webhook URL;
- e-mail: ``SmtpNotifier`` of ``apache-airflow-providers-smtp``, through an
  Airflow connection of type ``smtp`` (host, port, login, password; TLS,
  ``from_email``, ``timeout`` and ``retry_limit`` in its extras).

Secrets stay in those connections (the metadata DB, a secrets backend or
``AIRFLOW_CONN_*``); the config names only connection ids and recipients.

Delivery never fails the pipeline: a target whose connection is missing,
refuses or times out is logged (``alert ... not sent``) and the task goes on
with its own outcome. Messages are handed to ``notify`` directly, not through
the notifier's template rendering, so a value from the data that looks like
Jinja stays text.

It lives in an installed package, not in ``dags/``, because the deadline
alerts' callback (:func:`deadline_missed`) runs in the triggerer, which
imports it by its dotted path.
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

log = logging.getLogger(__name__)

#: Seconds a webhook post may take before it counts as failed (the task is waiting).
WEBHOOK_TIMEOUT = 10


@dataclass(frozen=True)
class Target:
    """One place an alert goes: ``kind`` webhook or email, its Airflow connection, the recipients."""

    kind: str
    conn_id: str
    to: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.conn_id}"


def targets(configs: Iterable[Any], event: str) -> list[Target]:
    """The targets of the projects' ``alerts`` configs that want ``event``, each once (an ingest DAG
    alerts every project reading its dataset; two projects sharing a webhook get one message)."""
    found: dict[tuple, Target] = {}
    for cfg in configs:
        if event not in cfg.events:
            continue
        if cfg.webhook is not None:
            found.setdefault(("webhook", cfg.webhook.conn_id), Target("webhook", cfg.webhook.conn_id))
        if cfg.email is not None:
            key = ("email", cfg.email.conn_id)
            before = found.get(key)
            to = tuple(dict.fromkeys([*(before.to if before else ()), *cfg.email.to]))
            found[key] = Target("email", cfg.email.conn_id, to)
    return list(found.values())


def notifier(target: Target, alert: Any) -> Any:
    """Airflow's notifier for one target, carrying the already written message."""
    if target.kind == "webhook":
        from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier

        # No retry handlers: slack_sdk's retry logs the request's URL, which is the webhook's secret.
        return SlackWebhookNotifier(
            slack_webhook_conn_id=target.conn_id, text=alert.text(), timeout=WEBHOOK_TIMEOUT, retry_handlers=[]
        )
    from airflow.providers.smtp.notifications.smtp import SmtpNotifier

    return SmtpNotifier(
        to=list(target.to), subject=alert.subject(), html_content=alert.html(), smtp_conn_id=target.conn_id
    )


def send(configs: Iterable[Any], alert: Any, context: Mapping[str, Any] | None = None) -> dict[str, str]:
    """Send ``alert`` to every target that wants it; ``{target: "sent" | "failed: <why>"}``. Never raises.

    ``alert`` may be a function that writes it: a message that cannot be written (a figure of an
    unexpected shape) is then logged like a target that cannot be reached, and the task goes on.
    """
    outcome: dict[str, str] = {}
    if callable(alert):
        try:
            alert = alert()
        except Exception as exc:
            log.warning("alert not written: %s: %s", type(exc).__name__, exc, exc_info=True)
            return {"message": f"failed: {type(exc).__name__}"}
    for target in targets(configs, alert.event):
        try:
            notifier(target, alert).notify(dict(context or {}))
            outcome[target.label] = "sent"
        except Exception as exc:  # noqa: BLE001 - a failing alert target never fails the pipeline task
            outcome[target.label] = f"failed: {type(exc).__name__}"
            log.warning("alert %s to %s not sent: %s: %s", alert.event, target.label, type(exc).__name__, exc)
    if outcome:
        log.info("alert %s (%s %s): %s", alert.event, alert.project, alert.partition or "-", outcome)
    return outcome


def send_one(config: Any, alert: Any) -> dict[str, str]:
    """The library's alert sender outside Airflow tasks (entry point ``pipelines.alerts``: the CLI's
    rollback): one project's targets, connections looked up as any Airflow client process does."""
    return send([config], alert)


def log_url(context: Mapping[str, Any]) -> str | None:
    """The Airflow UI page of the running task try (its log), from ``[api] base_url``."""
    try:
        return context["ti"].log_url
    except (KeyError, AttributeError, TypeError):
        return None


def partition(context: Mapping[str, Any]) -> str | None:
    """The run's partition key, or None when the run names none."""
    from pipelines.core.partitions import resolve_partition

    try:
        return resolve_partition(
            params=context.get("params"),
            logical_date=context.get("logical_date"),
            triggering_asset_events=context.get("triggering_asset_events"),
        )
    except Exception:  # noqa: BLE001 - a run that names no partition still gets its alert
        return None


def on_failure(name: str, configs: list[Any]) -> Any:
    """A task ``on_failure_callback``: Airflow calls it once a try fails for good (no retry left, or a
    failure retrying cannot fix). A failure the task has already alerted on (a contract halt) is skipped."""

    def task_failed(context: Mapping[str, Any]) -> None:
        from pipelines.core import alerts

        exc = context.get("exception")
        if getattr(exc, "pipelines_alerted", False):
            return
        ti = context.get("ti")
        send(
            configs,
            lambda: alerts.task_failed(
                name,
                getattr(ti, "dag_id", "?"),
                getattr(ti, "task_id", "?"),
                partition=partition(context),
                error=f"{type(exc).__name__}: {exc}" if exc is not None else "",
                tries=getattr(ti, "try_number", None),
                log_url=log_url(context),
            ),
            context,
        )

    return task_failed


def deadline(name: str, configs: list[Any], *, dag_id: str, what: str, minutes: int | None, schedule: str) -> Any:
    """The DAG's ``DeadlineAlert`` (None without a deadline or a target). Its callback runs in the triggerer.

    The deadline is ``minutes`` after the run's data interval ends, measured from the logical date (the
    interval's start) plus the cron ``schedule``'s longest interval: exact for a regular schedule
    (``@daily``), never early for an uneven one (weekdays only: a Tuesday gets Friday's three days).
    Not from the run's ``queued_at``: clearing a task of a run with such a deadline fails in Airflow 3.3
    (apache/airflow#70368), and clearing a halted day is how it is redelivered.
    """
    chosen = [asdict(t) for t in targets(configs, "deadline_missed")]
    if minutes is None or not chosen:
        return None
    from airflow.sdk import AsyncCallback, DeadlineAlert, DeadlineReference

    kwargs = {"project": name, "dag_id": dag_id, "what": what, "minutes": minutes, "target_specs": chosen}
    return DeadlineAlert(
        reference=DeadlineReference.DAGRUN_LOGICAL_DATE,
        interval=longest_interval(schedule) + dt.timedelta(minutes=minutes),
        callback=AsyncCallback(f"{__name__}.deadline_missed", kwargs=kwargs),
    )


@functools.lru_cache(maxsize=64)
def longest_interval(schedule: str, fires: int = 120) -> dt.timedelta:
    """The longest gap between consecutive fire times of a cron expression or preset (UTC, as the DAGs'
    timetables), over ``fires`` of them: four months of a daily schedule, ten years of a monthly one."""
    from croniter import croniter

    it = croniter(schedule, dt.datetime(2001, 1, 1, tzinfo=dt.UTC))
    times = [it.get_next(dt.datetime) for _ in range(fires)]
    return max(b - a for a, b in itertools.pairwise(times))


async def deadline_missed(
    *,
    project: str,
    dag_id: str,
    what: str,
    minutes: int,
    target_specs: list[dict],
    context: Mapping[str, Any] | None = None,
) -> str:
    """The triggerer's callback when a run's deadline passes: alert, unless the run is not a scheduled
    one (a backfill or a manual run of a past day is late by construction, never news)."""
    from pipelines.core import alerts

    run = dict((context or {}).get("dag_run") or {})
    if run.get("state") == "failed":  # its failure was alerted already (a halt, a task failed for good)
        return "skipped: the run failed, and its failure was alerted"
    if run.get("run_type") != "scheduled":
        log.info("deadline of %s %s passed; not a scheduled run: no alert", dag_id, run.get("dag_run_id"))
        return f"skipped: run type {run.get('run_type')}"
    day = str(run.get("data_interval_start") or run.get("logical_date") or "")[:10] or None
    when = (context or {}).get("deadline", {}).get("deadline_time")
    run_id = run.get("dag_run_id") or run.get("run_id")  # the API's name for it, and the model's
    run_url = None
    if run_id:
        from urllib.parse import quote

        from airflow.configuration import conf

        base = conf.get("api", "base_url", fallback="http://localhost:8080/")
        run_url = f"{base.rstrip('/')}/dags/{quote(dag_id)}/runs/{quote(str(run_id))}"
    alert = alerts.deadline_missed(
        project, dag_id, what=what, partition=day, deadline=str(when)[:19], minutes=minutes, run_url=run_url
    )
    outcome: dict[str, str] = {}
    for spec in target_specs:
        target = Target(spec["kind"], spec["conn_id"], tuple(spec.get("to") or ()))
        try:
            await notifier(target, alert).async_notify(dict(context or {}))
            outcome[target.label] = "sent"
        except Exception as exc:  # noqa: BLE001 - one target failing must not keep the message from the others
            outcome[target.label] = f"failed: {type(exc).__name__}"
            log.warning("alert deadline_missed to %s not sent: %s: %s", target.label, type(exc).__name__, exc)
    # Kept by Airflow as the callback's output (a text column).
    return json.dumps({"alert": alert.as_dict(), "outcome": outcome}, default=str)
