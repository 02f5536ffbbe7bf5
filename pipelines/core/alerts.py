"""Alert messages: what happened, to which project and partition, with its figures and links.

The library writes the message; Airflow's notifiers deliver it (the DAGs'
wiring in ``pipelines_airflow/alerting.py``: a Slack-compatible webhook and
e-mail, each through an Airflow connection that holds its secrets). Nothing
here imports Airflow or sends anything, so the same message serves a DAG
task, the CLI's log and a test's oracle.

Every alert carries:

- ``event``: one of :data:`pipelines.core.config.ALERT_EVENTS`;
- ``project`` (a dataset's alerts name the dataset) and ``partition`` (the day, or none);
- ``headline``: one line saying what happened;
- ``figures``: named values (rows, rules, drift share, metrics), in a stable order;
- ``links``: named URLs (the Airflow task log, the report, the MLflow run).

Text from data (rule ids, feature names, exception messages) is escaped for
the target that shows it: Slack's ``& < >`` control characters, HTML for
e-mail. Messages are never rendered as templates, so a value that looks like
Jinja stays text.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

log = logging.getLogger(__name__)

Severity = Literal["info", "warning", "error"]
_ICON = {"info": ":information_source:", "warning": ":warning:", "error": ":rotating_light:"}
#: Longest figure value shown; a traceback or a long list is cut, the link has the rest.
MAX_VALUE_CHARS = 500


@dataclass(frozen=True)
class Alert:
    """One message, whatever the target."""

    event: str
    project: str
    partition: str | None
    headline: str
    severity: Severity = "warning"
    figures: dict[str, Any] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # A figure the event does not have (None) is left out, not shown as a dash.
        object.__setattr__(self, "figures", {k: v for k, v in self.figures.items() if v is not None})

    def subject(self) -> str:
        """The e-mail subject (one line)."""
        where = f" {self.partition}" if self.partition else ""
        return _one_line(f"[{self.severity}] {self.project}{where}: {self.headline}")

    def text(self) -> str:
        """Slack ``mrkdwn``: a bold headline, one line per figure, one per link."""
        where = f" `{_slack(self.partition)}`" if self.partition else ""
        lines = [f"{_ICON[self.severity]} *{_slack(self.project)}*{where} ({self.event}): {_slack(self.headline)}"]
        lines += [f"• {_slack(name)}: {_slack(_show(value))}" for name, value in self.figures.items()]
        lines += [f"• {_slack(name)}: <{_slack_url(url)}|{_slack(_short(url))}>" for name, url in self.links.items()]
        return "\n".join(lines)

    def html(self) -> str:
        """The e-mail body: the headline, a table of figures, a list of links."""
        e = html.escape
        rows = "".join(
            f"<tr><th align='left'>{e(name)}</th><td>{e(_show(v))}</td></tr>" for name, v in self.figures.items()
        )
        links = "".join(f'<li>{e(name)}: <a href="{e(url)}">{e(url)}</a></li>' for name, url in self.links.items())
        where = f" &middot; partition <code>{e(self.partition)}</code>" if self.partition else ""
        return (
            f"<p><b>{e(self.project)}</b>{where} &middot; {e(self.event)} &middot; {e(self.severity)}</p>"
            f"<p>{e(self.headline)}</p><table>{rows}</table><ul>{links}</ul>"
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _show(value: Any) -> str:
    if isinstance(value, float):
        text = f"{value:.4g}"
    elif isinstance(value, list | tuple):
        text = ", ".join(_show(v) for v in value) or "(none)"
    elif value is None:
        text = "-"
    else:
        text = str(value)
    text = " ".join(text.split())  # one line: a value must not forge the message's own lines
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 1] + "…"


def _one_line(text: str) -> str:
    return " ".join(text.split())[:250]


def _slack(text: Any) -> str:
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack_url(url: str) -> str:
    # A URL inside <...|...> ends at '|' or '>': percent-encode those and the other control characters.
    return url.replace("&", "&amp;").replace("<", "%3C").replace(">", "%3E").replace("|", "%7C")


def _short(url: str) -> str:
    return url if len(url) <= 80 else url[:60] + "…" + url[-19:]


def _links(**links: str | None) -> dict[str, str]:
    return {name.replace("_", " "): url for name, url in links.items() if url}


def contract_halt(
    dataset: str, ds: str, summary: Mapping[str, Any], rules: list[str], *, readers: list[str], log_url: str | None
) -> Alert:
    """A delivery halted by its contract: nothing was published for the day."""
    figures = {
        "halted by": rules,
        "rules failed": summary.get("rules_failed") or rules,
        "landed rows": summary.get("landed_rows"),
        "landed files": summary.get("landed_files"),
        "quarantine rate": summary.get("quarantine_rate"),
        "unreadable files": len(summary.get("quarantined_files") or []),
        "model projects waiting": readers,
    }
    return Alert(
        event="contract_halt",
        project=dataset,
        partition=ds,
        headline=f"delivery halted by its contract ({', '.join(rules)}): nothing published",
        severity="error",
        figures=figures,
        links=_links(task_log=log_url, report=summary.get("report_html") or summary.get("report")),
    )


def drift_fired(project: str, fired: Mapping[str, Any], *, log_url: str | None) -> Alert:
    """The drift policy fired: a retraining was asked for."""
    figures = {
        "champion version": fired.get("model_version"),
        "drift share": fired.get("drift_share"),
        "drifted features": fired.get("drifted_features"),
        "metrics decayed": fired.get("decayed_metrics") or None,
        "rows checked": fired.get("rows"),
        "why": fired.get("reason"),
    }
    return Alert(
        event="drift_fired",
        project=project,
        partition=fired.get("ds"),
        headline="drift policy fired: retraining requested",
        severity="warning",
        figures=figures,
        links=_links(
            task_log=log_url,
            report=fired.get("html_report") or fired.get("report"),
            champion_run=fired.get("champion_run"),
        ),
    )


def gate_decision(
    project: str, decision: Mapping[str, Any], *, partition: str | None, log_url: str | None, run_url: str | None
) -> Alert:
    """A promotion gate decision, whichever way it went (each criterion with its verdict and figures)."""
    candidate, champion = decision.get("candidate"), decision.get("champion")
    if decision.get("promoted"):
        verdict, severity = f"promoted v{candidate} over v{champion or '(none)'}", "info"
    elif decision.get("shadow"):
        verdict, severity = f"v{candidate} starts in shadow beside v{champion} ({decision['shadow']})", "info"
    elif decision.get("noop"):
        verdict, severity = f"v{candidate} is already the champion: nothing to do", "info"
    elif decision.get("passed"):
        verdict, severity = f"v{candidate} passed; starts in shadow beside v{champion}", "info"
    else:
        verdict, severity = f"rejected v{candidate}; v{champion or '(none)'} stays champion", "warning"
    figures: dict[str, Any] = {"candidate": candidate, "champion": champion, "failed": decision.get("failed") or []}
    if decision.get("holdout_rows") is not None:
        figures["holdout rows"] = decision["holdout_rows"]
    for crit in decision.get("criteria") or []:
        figures[crit["name"]] = f"{'pass' if crit.get('passed') else 'FAIL'} {_criterion_numbers(crit)}".strip()
    for note in (decision.get("notes") or [])[:3]:
        figures.setdefault("note", note)
    return Alert(
        event="gate_decision",
        project=project,
        partition=partition,
        headline=f"gate: {verdict}",
        severity=severity,
        figures=figures,
        links=_links(task_log=log_url, challenger_run=run_url, decision=decision.get("decision_uri")),
    )


def _criterion_numbers(crit: Mapping[str, Any]) -> str:
    """A criterion's own figures (value and bound, gain, interval, worst slice...), the seed left out."""
    nums = {
        k: v
        for k, v in crit.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and k not in ("seed", "passed")
    }
    detail = f" ({crit['detail']})" if crit.get("detail") else ""
    return " ".join(f"{k}={_show(float(v))}" for k, v in nums.items()) + detail


def rollback(project: str, result: Mapping[str, Any], *, run_url: str | None, log_url: str | None = None) -> Alert:
    """The champion alias was moved back by hand."""
    return Alert(
        event="rollback",
        project=project,
        partition=None,
        headline=f"rolled back: v{result.get('champion')} is champion again, v{result.get('previous')} withdrawn",
        severity="warning",
        figures={k: result.get(k) for k in ("champion", "previous", "why", "at") if result.get(k) is not None},
        links=_links(task_log=log_url, champion_run=run_url),
    )


def task_failed(
    project: str,
    dag_id: str,
    task_id: str,
    *,
    partition: str | None,
    error: str,
    tries: int | None,
    log_url: str | None,
) -> Alert:
    """A task failed for good (its retries spent, or a failure retrying cannot fix)."""
    figures = {"DAG": dag_id, "task": task_id, "tries": tries, "error": _one_line(error) or "(no message)"}
    return Alert(
        event="task_failed",
        project=project,
        partition=partition,
        headline=f"{dag_id}.{task_id} failed for good",
        severity="error",
        figures=figures,
        links=_links(task_log=log_url),
    )


def deadline_missed(
    project: str, dag_id: str, *, what: str, partition: str | None, deadline: str, minutes: int, run_url: str | None
) -> Alert:
    """A scheduled day not validated (or not scored) by its deadline."""
    return Alert(
        event="deadline_missed",
        project=project,
        partition=partition,
        headline=f"not {what} by {deadline} ({minutes} min after its interval ended)",
        severity="error",
        figures={"DAG": dag_id, "deadline": deadline, "allowed minutes": minutes},
        links=_links(dag_run=run_url),
    )


def live_decision(
    project: str, ds: str, shadow: Mapping[str, Any], *, champion: str | None, promoted: bool, log_url: str | None
) -> Alert:
    """A live-gate decision that changed something: a shadow promoted on its live days, or retired."""
    version = shadow.get("shadow")
    if promoted:
        headline, severity = f"live gate: promoted shadow v{version} over v{champion or '(none)'}", "info"
    else:
        headline, severity = f"live gate: retired shadow v{version}", "warning"
    figures: dict[str, Any] = {
        "shadow": version,
        "champion": champion,
        "verdict": shadow.get("verdict"),
        "why": shadow.get("why"),
        "paired days": len(shadow.get("days") or []),
        "failed": shadow.get("failed") or [],
    }
    for crit in shadow.get("criteria") or []:
        figures[crit["name"]] = f"{'pass' if crit.get('passed') else 'FAIL'} {_criterion_numbers(crit)}".strip()
    return Alert(
        event="gate_decision",
        project=project,
        partition=ds,
        headline=headline,
        severity=severity,
        figures=figures,
        links=_links(task_log=log_url, decision=shadow.get("decision_uri")),
    )


def dispatch(config: Any, alert: Alert) -> dict[str, str]:
    """Deliver an alert raised outside an Airflow task (the CLI's rollback) through the senders installed
    packages declare (entry-point group ``pipelines.alerts``: ``pipelines_airflow`` declares Airflow's notifiers).

    Never raises: the step's own outcome stands whatever happens to its message. Returns
    ``{target: "sent" | "failed: <why>"}`` over every sender.
    """
    from importlib.metadata import entry_points

    if not config.wants(alert.event):
        return {}
    outcome: dict[str, str] = {}
    senders = list(entry_points(group="pipelines.alerts"))
    if not senders:
        log.warning("alert %s (%s): no sender installed (entry points pipelines.alerts)", alert.event, alert.project)
    for ep in senders:
        try:
            outcome.update(ep.load()(config, alert) or {})
        except Exception as exc:  # noqa: BLE001 - a broken sender must not fail the step it reports on
            outcome[ep.name] = f"failed: {type(exc).__name__}"
            log.warning("alert %s: sender %s failed: %s: %s", alert.event, ep.name, type(exc).__name__, exc)
    return outcome
