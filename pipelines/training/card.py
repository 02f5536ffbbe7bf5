"""A model card for every registered version: what it is, what it learned from, how it scored, why it serves.

:func:`card_data` gathers, for one version, only what is recorded elsewhere
(nothing on the card is computed here, so it can never disagree with its
sources):

- **purpose**: the project's description, ``card.intended_use`` and owner;
- **status**: its aliases, gate verdict, shadow state, the alias history's
  entries that name it (promoted, replaced, rolled back);
- **training**: the run's tags and parameters (window, holdout, data
  fingerprint, contract and version, trigger, rows, features, estimator);
- **holdout**: the run's ``holdout_*`` metrics with the bootstrap intervals,
  slice metrics and feature importance of its ``evaluation.json``;
- **gate**: each criterion of its gate decision (``gate/decision.json``), and
  the live gate's latest (``gate/live_decision.json``) when it was a shadow;
- **live**: when it has been champion, the daily metrics and drift share the
  drift checks logged on its run while it was (``live_*``, ``day_*``);
- **limitations**: ``card.limitations`` and what the figures show (missing
  training days, a sampled window, slices too small to judge, drift).

:func:`write_card` renders it as Markdown and HTML and logs both on the
version's run (``card/model_card.md``, ``card/model_card.html``), and tags the
version ``model_card`` (the artifact's URI) and ``model_card_status``. It is
called whenever the version's status changes (trained, gated, promoted,
replaced, rolled back, shadow started or ended); ``pipelines card`` renders
one on demand, with the live figures as of now.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import logging
from typing import TYPE_CHECKING, Any

from pipelines.core import catalog
from pipelines.core.errors import MissingInput

if TYPE_CHECKING:
    from pipelines.core.config import ProjectConfig

log = logging.getLogger(__name__)

STATUS_TAG = "model_card_status"
URI_TAG = "model_card"
LIVE_DAYS_SHOWN = 60  # the card's live table: the latest days as champion
UNDATED = "date not recorded"  # an alias move recorded before the history kept its time


def _artifact(c: Any, run_id: str, path: str) -> dict[str, Any] | None:
    """A JSON artifact of the run, or ``None`` when it was never logged (its folder's listing says so); an
    artifact store that cannot be read raises, so that no card says "not recorded" of what it could not read."""
    import posixpath

    import mlflow

    folder = posixpath.dirname(path) or None
    if path not in {f.path for f in c.list_artifacts(run_id, folder)}:
        return None
    data = mlflow.artifacts.load_dict(f"runs:/{run_id}/{path}")
    return data if isinstance(data, dict) else None


def _status(version: str, aliases: list[str], tags: dict[str, str], history: list[dict], shadows: set[str]) -> str:
    """The version's status from the aliases, the alias history and the shadow set (never from stale tags)."""
    from pipelines.core import champions
    from pipelines.core.tracking import CHAMPION, PREVIOUS

    if CHAMPION in aliases:
        return "champion"
    if version in champions.rolled_back(history):
        return "rolled back"
    if version in shadows:
        return "shadow"
    if PREVIOUS in aliases:
        return "previous champion"
    if version in champions.ever_champion(history):
        return "former champion"
    if tags.get("shadow") in ("retired", "active"):  # active by its tag but not scored: over max_versions
        return "retired shadow"
    return {
        "rejected": "rejected by the gate",
        "passed": "passed the gate, not promoted",
        "superseded": "passed the gate, superseded",
        "promoted": "former champion",
    }.get(tags.get("gate_decision") or "", "registered, not yet gated")


def _status_of(c: Any, project: ProjectConfig, mv: Any) -> tuple[list[dict], str]:
    """The model's alias history and the status of its registered version ``mv`` now."""
    from pipelines.core import champions, shadows

    history = champions.history(c, project.name)
    active = {s.version for s in shadows.active(project, c)}
    return history, _status(str(mv.version), sorted(mv.aliases or []), dict(mv.tags or {}), history, active)


def _live(c: Any, project: ProjectConfig, run_id: str, seen: tuple[str, str] | None) -> dict[str, Any] | None:
    """The daily figures the drift checks logged on the run: they log on the champion's run only, so these
    are its days as champion (partition days, whenever they were checked).

    A day checked again counts with its latest figures (metrics are logged at the time of the check). A day
    whose drift window (``drift.window_days`` ending at it) reaches into ``seen`` (the days the version was
    trained and tested on: the first checks after training, a backfill's, a late check's) has in-sample
    figures: shown and marked, never in the mean.
    """
    from pipelines.core.partitions import step_ds

    primary = project.metrics.primary
    series: dict[str, dict[str, float]] = {}
    for key in (f"day_{primary}", f"live_{primary}", "live_drift_share"):
        history = sorted(c.get_metric_history(run_id, key), key=lambda m: m.timestamp)  # stable: the last wins
        series[key] = {step_ds(m.step): m.value for m in history}
    days = sorted(set().union(*(s.keys() for s in series.values())))
    if not days:
        return None
    span = dt.timedelta(days=project.drift.window_days - 1)
    inside = {d for d in days if seen and seen[0] <= d and (dt.date.fromisoformat(d) - span).isoformat() <= seen[1]}
    rows = [{"ds": d, **{k: series[k].get(d) for k in series}, "seen": d in inside} for d in days]
    threshold = project.drift.drift_share
    drifted = [r["ds"] for r in rows if (r["live_drift_share"] or 0) >= threshold]
    values = [r[f"live_{primary}"] for r in rows if r[f"live_{primary}"] is not None and not r["seen"]]
    return {
        "since": days[0],
        "until": days[-1],
        "days": len(rows),
        "metric": primary,
        "mean": round(sum(values) / len(values), 6) if values else None,
        "last": values[-1] if values else None,
        "seen_days": [r["ds"] for r in rows if r["seen"]],
        "seen_window": f"{seen[0]}..{seen[1]}" if seen else None,
        "drift_share_threshold": threshold,
        "drifted_days": drifted,
        "series": rows[-LIVE_DAYS_SHOWN:],
    }


def card_data(project: ProjectConfig, version: str, c: Any | None = None) -> dict[str, Any]:
    """Everything the card of ``version`` says, from the registry, its run and its artifacts.

    Raises:
        MissingInput: no such registered version.
    """
    from mlflow.exceptions import MlflowException

    from pipelines.core.tracking import client, run_link

    c = c or client()
    version = str(version).strip()
    version = str(int(version)) if str(version).isdigit() else str(version)
    try:
        mv = c.get_model_version(project.name, version)
    except MlflowException:
        raise MissingInput(f"{project.name} has no registered version {version!r}") from None
    try:
        run = c.get_run(mv.run_id)
    except MlflowException:
        raise MissingInput(f"{project.name} v{version}: its MLflow run {mv.run_id} is gone") from None
    tags, params, metrics = dict(mv.tags or {}), run.data.params, run.data.metrics
    aliases = sorted(mv.aliases or [])
    history, status = _status_of(c, project, mv)
    events = [e for e in history if version in (e.get("champion"), e.get("previous"))]
    promotions = [e for e in events if e.get("champion") == version and e["event"] in ("promote", "recovered")]
    evaluation = _artifact(c, mv.run_id, catalog.EVALUATION) or {}
    decision = _artifact(c, mv.run_id, catalog.GATE_DECISION)
    live_decision = _artifact(c, mv.run_id, catalog.LIVE_GATE_DECISION)
    data = {
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "model": project.name,
        "version": version,
        "status": status,
        "aliases": aliases,
        "run_id": mv.run_id,
        "run_link": run_link(mv.run_id, run.info.experiment_id),
        "registered_at": dt.datetime.fromtimestamp(mv.creation_timestamp / 1000, dt.UTC).isoformat(timespec="seconds"),
        "purpose": {
            "description": project.description,
            "intended_use": project.card.intended_use or project.description,
            "owner": project.owner,
            "task": project.target.task,
            "target": project.target.column,
        },
        "training": _training(run.data.tags, params),
        "holdout": _holdout(project, metrics, evaluation),
        "slices": evaluation.get("slices") or [],
        "importance": evaluation.get("importance") or {},
        "gate": _gate(decision, tags),
        "live_gate": _live_gate(live_decision),
        "history": [{k: e.get(k) for k in ("event", "champion", "previous", "why", "at")} for e in events],
        "promoted": [e.get("at") or UNDATED for e in promotions],
        "live": _live(c, project, mv.run_id, _seen(run.data.tags)),
    }
    data["limitations"] = [*project.card.limitations, *_measured_limitations(project, data)]
    return data


def _seen(rtags: dict[str, str]) -> tuple[str, str] | None:
    """The first and last day the version was trained or tested on (its training window's start to its
    holdout's end; either window alone when the other is not recorded)."""
    from pipelines.core.tracking import window

    train, hold = window(rtags, "training_window"), window(rtags, "holdout_window")
    if not (train or hold):
        return None
    return (train or hold)[0], (hold or train)[1]


def _training(rtags: dict[str, str], params: dict[str, str]) -> dict[str, Any]:
    """What the version was trained on, as its run's tags and parameters say."""
    features = ("features_numeric", "features_categorical", "features_derived", "features_expressions")
    return {
        **{
            k: rtags.get(tag)
            for k, tag in (
                ("window", "training_window"),
                ("holdout_window", "holdout_window"),
                ("data_fingerprint", "data_fingerprint"),
                ("contract", "contract"),
                ("contract_version", "contract_version"),
                ("trigger", "trigger"),
                ("code_version", "code_version"),
                ("config_hash", "config_hash"),
            )
        },
        "estimator": params.get("estimator"),
        "family": params.get("model_family"),
        "train_rows": _int(params.get("train_rows")),
        "holdout_rows": _int(params.get("holdout_rows")),
        "sample_rate": _float(params.get("sample_rate")),
        "missing_days": [d for d in (params.get("missing_days") or "-").split(",") if d and d != "-"],
        "features": [f for key in features for f in (params.get(key) or "").split(",") if f],
    }


def _holdout(project: ProjectConfig, metrics: dict[str, float], evaluation: dict[str, Any]) -> dict[str, Any]:
    """The run's holdout metrics, each with the interval its evaluation recorded."""
    intervals = evaluation.get("metrics") or {}
    names = dict.fromkeys([project.metrics.primary, *project.metrics.secondary])
    return {
        "metrics": {
            n: {
                "value": metrics.get(f"holdout_{n}"),
                "low": (intervals.get(n) or {}).get("low"),
                "high": (intervals.get(n) or {}).get("high"),
            }
            for n in names
        },
        "confidence": evaluation.get("confidence"),
        "samples": evaluation.get("samples"),
        "recorded": bool(evaluation),
    }


def _int(v: Any) -> int | None:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def _float(v: Any) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _gate(decision: dict[str, Any] | None, tags: dict[str, str]) -> dict[str, Any] | None:
    if decision is None:
        return None
    return {
        "passed": bool(decision.get("passed")),
        "verdict": tags.get("gate_decision"),
        "champion": decision.get("champion"),
        "failed": decision.get("failed") or [],
        "notes": decision.get("notes") or [],
        "holdout_days": decision.get("holdout_days") or [],
        "holdout_rows": decision.get("holdout_rows"),
        "criteria": [
            {
                "name": k["name"],
                "passed": bool(k.get("passed")),
                "not_checked": bool(k.get("not_checked")),
                "figures": _figures(k),
            }
            for k in decision.get("criteria") or []
        ],
    }


def _figures(criterion: dict[str, Any]) -> dict[str, Any]:
    """A criterion's own numbers (not its per-slice table, which the slices section shows)."""
    return {
        k: v
        for k, v in criterion.items()
        if k not in ("name", "passed", "not_checked", "slices", "unchecked", "detail")
        and isinstance(v, int | float | str | type(None))
    }


def _live_gate(d: dict[str, Any] | None) -> dict[str, Any] | None:
    if d is None:
        return None
    keep = ("ds", "verdict", "why", "window", "paired_days", "interval", "criteria")
    return {k: d.get(k) for k in keep if k in d}


def _spans(days: list[str]) -> str:
    """Days as runs of consecutive days: ``2013-05-05..2013-06-11, 2013-06-20``."""
    spans: list[list[dt.date]] = []
    for d in sorted(dt.date.fromisoformat(x) for x in days):
        if spans and d - spans[-1][1] == dt.timedelta(days=1):
            spans[-1][1] = d
        else:
            spans.append([d, d])
    return ", ".join(str(a) if a == b else f"{a}..{b}" for a, b in spans)


def _measured_limitations(project: ProjectConfig, data: dict[str, Any]) -> list[str]:
    out = []
    t = data["training"]
    if t["missing_days"]:
        out.append(f"Trained without {len(t['missing_days'])} day(s) of its window: {_spans(t['missing_days'])}.")
    if t["sample_rate"] is not None and t["sample_rate"] < 1:
        out.append(f"Trained on a {t['sample_rate']:.1%} sample of its window's rows.")
    for s in data["slices"]:
        small = [v["value"] for v in s["values"] if "metrics" not in v]
        if small:
            out.append(
                f"{len(small)} value(s) of {s['column']} had under {s['min_size']} holdout rows and were not "
                f"measured on their own ({', '.join(small[:8])}{', ...' if len(small) > 8 else ''})."
            )
    if not data["holdout"]["recorded"]:
        out.append("Trained before holdout intervals, slices and importance were recorded: the card lacks them.")
    live = data.get("live")
    if live and live["seen_days"]:
        out.append(
            f"{len(live['seen_days'])} of its live day(s) ({_spans(live['seen_days'])}) have a drift window reaching "
            f"into the days it was trained and tested on ({live['seen_window']}): in-sample, marked, and not in "
            "the live mean."
        )
    if live and live["drifted_days"]:
        out.append(
            f"Drift share at or above {live['drift_share_threshold']} on {len(live['drifted_days'])} day(s) "
            f"as champion (latest {live['drifted_days'][-1]})."
        )
    return out


# ---- rendering


def _num(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


def render_markdown(d: dict[str, Any]) -> str:
    """The card as Markdown (what the run's ``card/model_card.md`` holds)."""
    lines = [*_md_head(d), *_md_holdout(d), *_md_gate(d), *_md_live(d), "", "## Known limitations", ""]
    lines += [f"- {_line(x)}" for x in d["limitations"]] or ["- none recorded"]
    return "\n".join(lines) + "\n"


def _line(text: Any) -> str:
    """Free text (config, reasons given, data values) on one line: a line break in it cannot start a
    list item or a heading of its own."""
    return " ".join(str(text).split())


def _cell(text: Any) -> str:
    """:func:`_line` for a table cell: its ``|`` escaped, so a value cannot add cells."""
    return _line(text).replace("|", "\\|")


def _md_head(d: dict[str, Any]) -> list[str]:
    p, t = d["purpose"], d["training"]
    rate = f", sample rate {t['sample_rate']:.4f}" if t["sample_rate"] is not None else ""
    return [
        f"# Model card: {d['model']} v{d['version']} ({d['status']})",
        "",
        _line(p["description"]),
        "",
        f"- **Intended use:** {_line(p['intended_use'])}",
        f"- **Owner:** {_line(p['owner'])}",
        f"- **Task:** {p['task']} of `{p['target']}`; {t['family']} ({t['estimator']})",
        f"- **Aliases:** {', '.join(d['aliases']) or 'none'}; registered {d['registered_at']}",
        f"- **MLflow run:** {d['run_link']}",
        f"- **Card generated:** {d['generated_at']}",
        "",
        "## Training",
        "",
        f"- Window {t['window']}, holdout {t['holdout_window']} ({t['trigger']} trigger)",
        f"- {_num(t['train_rows'])} training rows, {_num(t['holdout_rows'])} holdout rows{rate}",
        f"- Data fingerprint `{t['data_fingerprint']}`; contract {t['contract']} v{t['contract_version']}",
        f"- Features: {', '.join(t['features'])}",
        f"- Code {t['code_version']}, config {t['config_hash']}",
    ]


def _md_holdout(d: dict[str, Any]) -> list[str]:
    h = d["holdout"]
    lines = ["", "## Holdout metrics", ""]
    if h["recorded"]:
        lines += [f"{h['confidence']:.0%} percentile bootstrap intervals, {h['samples']} resamples of the rows.", ""]
    lines += ["| metric | value | interval |", "|---|---|---|"]
    for name, m in h["metrics"].items():
        interval = f"[{_num(m['low'])}, {_num(m['high'])}]" if m["low"] is not None else "n/a"
        lines.append(f"| {name} | {_num(m['value'])} | {interval} |")
    names = list(h["metrics"])
    for s in d["slices"]:
        lines += ["", f"### Slices by {s['column']} (at least {s['min_size']} rows)", ""]
        lines += ["| value | rows | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
        for v in s["values"]:
            figures = [_num((v.get("metrics") or {}).get(n)) if "metrics" in v else "too few" for n in names]
            lines.append(f"| {_cell(v['value'])} | {v['rows']} | " + " | ".join(figures) + " |")
    imp = d["importance"]
    if imp.get("features"):
        lines += [
            "",
            f"## Feature importance ({imp['method']}: mean absolute contribution, {imp.get('units')}, "
            f"{imp['rows']} holdout rows)",
            "",
            "| feature | mean abs contribution |",
            "|---|---|",
        ]
        lines += [f"| {_cell(f['feature'])} | {_num(f['mean_abs_contribution'])} |" for f in imp["features"]]
    return lines


def _md_gate(d: dict[str, Any]) -> list[str]:
    g, lg = d["gate"], d["live_gate"]
    lines = ["", "## Gate decision", ""]
    if g is None:
        lines.append("Not gated yet.")
    else:
        verdict = "passed" if g["passed"] else f"failed ({', '.join(g['failed'])})"
        lines.append(f"Against champion {g['champion'] or '(none)'}: **{verdict}** (version tag: {g['verdict']}).")
        lines += [f"- {_line(n)}" for n in g["notes"]]
        lines += ["", "| criterion | result | figures |", "|---|---|---|"]
        for k in g["criteria"]:
            result = ("not checked, " if k["not_checked"] else "") + ("pass" if k["passed"] else "**FAIL**")
            lines.append(f"| {k['name']} | {result} | `{json.dumps(k['figures'], sort_keys=True)}` |")
    if lg:
        why = _line(lg.get("why"))
        lines += ["", "## Live gate (as a shadow)", "", f"On {lg.get('ds')}: **{lg.get('verdict')}**: {why}"]
    if d["history"]:
        lines += ["", "## Alias history", ""]
        for e in d["history"]:
            lines.append(
                f"- {e['at'] or UNDATED}: {e['event']} v{e['champion']} (previous {e['previous']}): {_line(e['why'])}"
            )
    return lines


def _md_live(d: dict[str, Any]) -> list[str]:
    live = d["live"]
    lines = ["", "## Live performance and drift as champion", ""]
    if not live:
        champion = d["status"] == "champion" or d["promoted"]
        return [*lines, "No drift check has run on its days as champion yet." if champion else "Never champion."]
    lines.append(
        f"{live['since']}..{live['until']}: {live['days']} day(s) checked; {live['metric']} (the drift window's) "
        f"mean {_num(live['mean'])}, latest {_num(live['last'])}; drift share at or above "
        f"{live['drift_share_threshold']} on {len(live['drifted_days'])} day(s)."
    )
    m = live["metric"]
    lines += ["", f"| day | day {m} | window {m} | drift share |", "|---|---|---|---|"]
    for r in live["series"]:
        figures = [_num(r[f"day_{m}"]), _num(r[f"live_{m}"]), _num(r["live_drift_share"])]
        day = f"{r['ds']} (in-sample)" if r.get("seen") else r["ds"]
        lines.append(f"| {day} | " + " | ".join(figures) + " |")
    return lines


def render_html(d: dict[str, Any]) -> str:
    """The card as one self-contained page: the Markdown's sections as HTML (tables as tables)."""
    out = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(d['model'])} v{html.escape(d['version'])}: model card</title>",
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}code{font-size:90%}</style></head><body>",
    ]
    table: list[str] = []

    def flush() -> None:
        if table:
            rows = [r.strip("|").split(" | ") for r in table if not set(r) <= set("|-")]
            rows = [[c.replace("\\|", "|") for c in r] for r in rows]  # a cell's own | (see _cell)
            head, *body = rows
            out.append("<table><tr>" + "".join(f"<th>{_inline(c)}</th>" for c in head) + "</tr>")
            out.extend("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in body)
            out.append("</table>")
            table.clear()

    in_list = False
    for line in render_markdown(d).splitlines():
        if line.startswith("|"):
            table.append(line)
            continue
        flush()
        if line.startswith("- "):
            if not in_list:
                out.append("<ul>")
                in_list = True
            out.append(f"<li>{_inline(line[2:])}</li>")
            continue
        if in_list:
            out.append("</ul>")
            in_list = False
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            out.append(f"<h{level}>{_inline(line[level:].strip())}</h{level}>")
        elif line:
            out.append(f"<p>{_inline(line)}</p>")
    flush()
    if in_list:
        out.append("</ul>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _inline(text: str) -> str:
    """Markdown's ``code`` and **bold** as HTML, everything else escaped."""
    import re

    text = html.escape(text.strip())
    text = re.sub(r"`([^`]*)`", r"<code>\1</code>", text)
    return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", text)


# ---- logging with the version


def write_card(project: ProjectConfig, version: str, c: Any | None = None, *, stale_only: bool = False) -> dict:
    """Render the card of ``version`` and log it with the version (its run's artifacts, version tags).

    ``stale_only``: only when the status its card records is not its status now (else ``written`` is False).
    """
    from pipelines.core.tracking import client

    c = c or client()
    if stale_only:
        recorded, status = _statuses(c, project, version)
        if recorded == status:
            return {"model": project.name, "version": str(version), "status": status, "written": False}
    data = card_data(project, version, c)
    c.log_text(data["run_id"], render_markdown(data), catalog.MODEL_CARD_MD)
    c.log_text(data["run_id"], render_html(data), catalog.MODEL_CARD_HTML)
    uri = f"runs:/{data['run_id']}/{catalog.MODEL_CARD_MD}"
    c.set_model_version_tag(project.name, data["version"], URI_TAG, uri)
    c.set_model_version_tag(project.name, data["version"], STATUS_TAG, data["status"])
    log.info("%s v%s: model card (%s) logged: %s", project.name, data["version"], data["status"], uri)
    return {"model": project.name, "version": data["version"], "status": data["status"], "uri": uri, "written": True}


def _statuses(c: Any, project: ProjectConfig, version: str) -> tuple[str | None, str]:
    """The status the version's card records, and its status now (what :func:`card_data` would say)."""
    mv = c.get_model_version(project.name, str(version))
    return (mv.tags or {}).get(STATUS_TAG), _status_of(c, project, mv)[1]


def refresh_cards(
    project: ProjectConfig, versions: list[str | None], c: Any | None = None, *, stale_only: bool = False
) -> list[dict[str, Any]]:
    """Rewrite the cards of ``versions`` (their status changed). A card is documentation: one that cannot be
    written is logged as an error and never fails the step that changed the status."""
    done = []
    for v in dict.fromkeys(str(v) for v in versions if v):
        try:
            done.append(write_card(project, v, c, stale_only=stale_only))
        except Exception:  # the status change itself already happened (see the docstring)
            log.exception("%s v%s: the model card could not be written; `pipelines card` renders it", project.name, v)
    return done


def refresh_alias_cards(project: ProjectConfig, versions: list[str | None], c: Any | None = None) -> list[dict]:
    """The stale cards among ``versions``, the versions holding the champion and previous-champion aliases
    and those whose card still says they do, rewritten: after a step that may have moved the aliases
    without their cards following (a retry of a promotion that died after the move, a repaired record)."""
    from pipelines.core.tracking import CHAMPION, PREVIOUS, client

    c = c or client()
    held = []
    for alias in (CHAMPION, PREVIOUS):
        try:
            held.append(str(c.get_model_version_by_alias(project.name, alias).version))
        except Exception as exc:  # noqa: BLE001 - no such alias: nothing holds it
            log.debug("%s: no %s alias (%s)", project.name, alias, exc)
    try:
        said = [
            str(v.version)
            for v in c.search_model_versions(f"name='{project.name}'")
            if (v.tags or {}).get(STATUS_TAG) in ("champion", "previous champion")
        ]
    except Exception:  # see refresh_cards: never fails the step
        log.exception("%s: the versions' recorded card statuses could not be read", project.name)
        said = []
    return refresh_cards(project, [*versions, *held, *said], c, stale_only=True)
