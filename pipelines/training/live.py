"""Live evidence: shadow versions against the champion on the same labelled rows, day after day, and the live gate.

Labels arrive with the data (a day's flights carry their arrival delays), so
every validated day that a shadow version and the champion both scored is a
paired test on real traffic:

1. **A day** (:func:`measure_day`, the batch_score DAG's ``judge_shadows``
   task after the day's lanes published): every version that scored the day
   (the champion's lane, which BI reads, and each shadow lane) is measured on
   the day's labelled rows, the same rows for all, read back from the
   published files (a published file holds the validated file's rows in
   order, and both must name the validated file's current SHA-256).
   Stored as ``reports/models/<model>/ds=D/live.json``.
2. **A window** (:func:`evidence`): over the ``gate.live.window_days``
   partition days ending at the judged day, the days on which the shadow and
   today's champion both have scores on the current data are pooled: each
   one's metrics, a seeded paired bootstrap over **days** of the primary
   metric's gain (the gate's, resampling whole days: rows of one day share
   weather and schedules) and per-slice non-regression (``gate.slices``).
3. **The live gate** (:func:`judge`, pure; :func:`run_live_gate` acts):
   ``promote`` when at least ``gate.live.min_days`` days are paired, the
   interval's lower bound is above ``gate.live.min_gain`` and no slice loses
   more than its tolerance (and, unless ``gate.promotion`` is ``live``, the
   holdout gate passes against the champion of the day); ``retire`` when the
   shadow loses with confidence over the window (the interval's upper bound
   below zero) or has been scored for more than ``shadow.max_age_days``
   partition days; otherwise ``wait``. A promotion moves the ``champion``
   alias through the gate's own locked move and alias history, its decision
   naming the live window and its figures; at most one shadow is promoted
   per judged day (the best gain), the others are judged again against the
   new champion the next day.

Each judged day writes ``live_decision.json`` and an HTML report
(``live.html``: the metric per day, champion against each shadow, and the
interval), and logs each shadow's live metrics and its decision to its
MLflow run (``gate/live_decision.json``).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipelines.core import catalog
from pipelines.core.errors import MissingInput, PipelinesError
from pipelines.core.partitions import ds_str, metric_step

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from pipelines.core.config import ProjectConfig
    from pipelines.core.storage import Storage

log = logging.getLogger(__name__)

VERDICTS = ("promote", "retire", "wait")


@dataclass
class Day:
    """A labelled day and every version's scores on its labelled rows (same rows, same order)."""

    ds: str
    input_sha256: str
    rows: pd.DataFrame  # labelled rows, with the slice features
    y: np.ndarray
    scores: dict[str, np.ndarray] = field(default_factory=dict)  # version -> score per labelled row
    lanes: dict[str, str] = field(default_factory=dict)  # version -> "champion" | "shadow"
    bi_version: str | None = None
    total_rows: int = 0


def _current_sha(storage: Storage, project: ProjectConfig, ds: str) -> str | None:
    """The validated file's SHA-256 (``None``: not validated, or halted), as its validation report names it;
    computed from the file when the report does not say."""
    from pipelines.core.storage import sha256_file

    data = catalog.validated_file(project.dataset.name, ds)
    if not storage.exists(data):
        return None
    report = catalog.validation_report(project.dataset.name, ds)
    summary = storage.read_json(report).get("summary", {}) if storage.exists(report) else {}
    if summary.get("status") == "halted":
        return None
    if summary.get("validated_sha256"):
        return summary["validated_sha256"]
    with storage.local_copy(data) as path:
        return sha256_file(path)


def _lane_scores(storage: Storage, lane: catalog.Lane, ds: str, sha: str, rows: int) -> tuple[str, Any] | None:
    """``(version, scores)`` of a lane's publication of the day over the current data, else ``None``."""
    import pyarrow.parquet as pq

    manifest_key = catalog.scores_manifest(lane, ds)
    if not storage.exists(manifest_key):
        return None
    try:
        manifest = storage.read_json(manifest_key)
    except ValueError:
        return None
    if (manifest.get("input") or {}).get("sha256") != sha or manifest.get("rows") != rows:
        return None  # published over other data (withdrawal is on its way) or damaged
    try:
        with storage.local_copy(catalog.scores_file(lane, ds)) as path:
            file = pq.ParquetFile(path)
            footer = catalog.scores_footer(file.metadata) or {}
            if (
                file.metadata.num_rows != rows
                or str(footer.get("model_version")) != str(manifest["model_version"])
                or footer.get("input_sha256") != sha
            ):
                return None  # replaced between the manifest and the file: the next judgement reads them again
            scores = file.read(columns=["score"]).column("score").to_numpy()
    except (MissingInput, ValueError, OSError):
        return None
    return str(manifest["model_version"]), scores


def load_day(project: ProjectConfig, ds: str, storage: Storage) -> Day | None:
    """The day's labelled rows and every lane's scores on them; ``None`` when the day is not validated."""
    import numpy as np

    from pipelines.training.dataset import labelled
    from pipelines.training.gate import with_slice_features

    ds = ds_str(ds)
    sha = _current_sha(storage, project, ds)
    if sha is None:
        return None
    frame = catalog.read_validated(storage, project.dataset.name, ds)
    from pipelines.core.features import make_target

    known = make_target(frame, project).notna().to_numpy()
    rows, y = labelled(frame, project)
    day = Day(ds, sha, with_slice_features(project, rows), y.to_numpy(), total_rows=len(frame))
    for lane in [catalog.Lane(project.name), *catalog.shadow_lanes(storage, project.name, ds)]:
        found = _lane_scores(storage, lane, ds, sha, len(frame))
        if found is None:
            continue
        version, scores = found
        day.scores[version] = np.asarray(scores, dtype="float64")[known]
        day.lanes[version] = "champion" if lane.shadow is None else "shadow"
        if lane.shadow is None:
            day.bi_version = version
    return day


def measure_day(project: ProjectConfig, ds: str, storage: Storage | None = None) -> dict[str, Any]:
    """Measure every version that scored the day on its labelled rows; stored as the day's live record.

    Raises:
        MissingInput: the day is not validated (halted, or not yet).
    """
    from pipelines.core.storage import get_storage

    storage = storage or get_storage()
    ds = ds_str(ds)
    day = load_day(project, ds, storage)
    if day is None:
        raise MissingInput(f"{project.dataset.name} ds={ds} is not validated: no live evidence for the day")
    record = day_record(project, day)
    storage.write_json(catalog.live_record(project.name, ds), record)
    return record


def day_record(project: ProjectConfig, day: Day) -> dict[str, Any]:
    """A day's live record: every version that scored it, measured on the same labelled rows."""
    from pipelines.core.metrics import evaluate

    names = _metric_names(project)
    ds = day.ds
    return {
        "model": project.name,
        "ds": ds,
        "input_sha256": day.input_sha256,
        "rows": day.total_rows,
        "labelled_rows": len(day.y),
        "bi_version": day.bi_version,
        "versions": {
            v: {
                "lane": day.lanes[v],
                # No labelled row (labels not in yet, or an empty day): nothing to measure.
                "metrics": _finite(evaluate(project.target.task, names, day.y, s)) if len(day.y) else None,
            }
            for v, s in sorted(day.scores.items(), key=lambda kv: int(kv[0]))
        },
        "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def _metric_names(project: ProjectConfig) -> list[str]:
    return list(dict.fromkeys([project.metrics.primary, *project.metrics.secondary]))


def _finite(metrics: dict[str, float]) -> dict[str, float | None]:
    """Metrics as JSON can hold them: an undefined one (one class) is ``None``."""
    return {k: (None if v != v else float(v)) for k, v in metrics.items()}


def window_days(project: ProjectConfig, end_ds: str) -> list[str]:
    """The partition days of the live window ending at ``end_ds`` (inclusive), oldest first."""
    from pipelines.core.partitions import parse_ds

    end = parse_ds(end_ds)
    n = project.gate.live.window_days
    return [(end - dt.timedelta(days=i)).isoformat() for i in range(n - 1, -1, -1)]


def evidence(
    project: ProjectConfig,
    shadow: str,
    champion: str | None,
    end_ds: str,
    storage: Storage,
    days: dict | None = None,
    trained: list[tuple[str, str]] = (),
) -> dict[str, Any]:
    """The paired live evidence of ``shadow`` against ``champion`` over the window ending at ``end_ds``.

    ``days`` caches loaded days (``{ds: Day | None}``) across shadows of one judgement. Days inside a
    ``trained`` window (the days either version saw: training window and holdout) are never evidence: a
    version scored on days it trained on (a backfill, a re-score of an old day) would look better than it is.
    """
    import numpy as np

    days = {} if days is None else days
    paired: list[Day] = []
    for ds in window_days(project, end_ds):
        if any(first <= ds <= last for first, last in trained):
            continue
        if ds not in days:
            days[ds] = load_day(project, ds, storage)
        day = days[ds]
        if day is not None and shadow in day.scores and champion in day.scores and len(day.y):
            paired.append(day)
    out: dict[str, Any] = {
        "shadow": shadow,
        "champion": champion,
        "window": [window_days(project, end_ds)[0], ds_str(end_ds)],
        "days": [d.ds for d in paired],
    }
    if champion is None or not paired:
        return {**out, "rows": 0, "per_day": []}
    import pandas as pd

    rows = pd.concat([d.rows.assign(ds=d.ds) for d in paired], ignore_index=True)
    y = np.concatenate([d.y for d in paired])
    a = np.concatenate([d.scores[shadow] for d in paired])
    b = np.concatenate([d.scores[champion] for d in paired])
    return {**out, "rows": len(y), "per_day": _per_day(project, paired, shadow, champion), "_pooled": (rows, y, a, b)}


def _per_day(project: ProjectConfig, paired: list[Day], shadow: str, champion: str) -> list[dict[str, Any]]:
    """The primary metric of both on each paired day (the report's lines)."""
    from pipelines.core.metrics import METRICS

    metric = METRICS[project.metrics.primary]
    out = []
    for d in paired:
        s, c = metric.fn(d.y, d.scores[shadow]), metric.fn(d.y, d.scores[champion])
        out.append(
            {
                "ds": d.ds,
                "rows": len(d.y),
                "shadow": None if s != s else float(s),
                "champion": None if c != c else float(c),
                "bi_version": d.bi_version,
            }
        )
    return out


def _expanded(ci: dict[str, Any], confidence: float) -> dict[str, Any]:
    """The bootstrap interval widened for a small number of days (Hesterberg's expanded percentile interval):
    by ``t(n-1) / z * sqrt(n / (n-1))`` around the mean, ``n`` the days with the metric defined. A percentile
    bootstrap over 7 to 14 clusters is too narrow: a shadow no better than the champion passed a 98.75 %
    look about 2.7 % of the time instead of 0.625 % (a simulation of this bootstrap)."""
    from scipy import stats

    n = ci.get("days") or 0
    if ci.get("low") is None or n < 2:
        return {**ci, "expansion": None}
    tail = 1 - (1 - confidence) / 2
    k = float(stats.t.ppf(tail, n - 1) / stats.norm.ppf(tail) * (n / (n - 1)) ** 0.5)
    mean = ci["mean"]
    return {**ci, "low": mean - (mean - ci["low"]) * k, "high": mean + (ci["high"] - mean) * k, "expansion": k}


def planned_looks(project: ProjectConfig) -> int:
    """How many times a shadow is judged for promotion at most: once every ``min_days`` of its age."""
    return max(1, project.shadow.max_age_days // project.gate.live.min_days)


def judge(project: ProjectConfig, ev: dict[str, Any], age_days: int, looks_taken: int = 0) -> dict[str, Any]:
    """The live criterion on one shadow's evidence (pure): criteria, figures and the verdict.

    The shadow is judged every day, but a decision on the evidence is taken only at a **look**: once
    every ``gate.live.min_days`` days of its age (``age_days // min_days`` above ``looks_taken``). Each
    look's interval is at the configured confidence divided over the :func:`planned_looks` (Bonferroni):
    judging overlapping windows daily at 95% would promote a shadow no better than the champion about one
    time in five over a month (a day-level simulation of this gate), against at most 1 in 40 this way.

    ``promote``: at a look, enough paired days, the interval's lower bound above ``min_gain``, no slice
    regressing. ``retire``: at a look, enough days and the upper bound below zero (it loses with
    confidence), or, on any day, older than ``shadow.max_age_days``. Otherwise ``wait``.
    """
    from pipelines.core.config import BootstrapConfig
    from pipelines.core.metrics import METRICS, evaluate
    from pipelines.training.gate import _bootstrap, slice_criterion

    live = project.gate.live
    primary = METRICS[project.metrics.primary]
    n_days = len(ev["days"])
    enough = n_days >= live.min_days
    criteria: list[dict[str, Any]] = [
        {"name": "live_days", "passed": enough, "days": n_days, "min_days": live.min_days}
    ]
    looks = planned_looks(project)
    due = age_days >= live.min_days and age_days // live.min_days > looks_taken and looks_taken < looks
    confidence = 1 - (1 - live.confidence) / looks
    out: dict[str, Any] = {
        "age_days": age_days,
        "max_age_days": project.shadow.max_age_days,
        "look": False,
        "looks_taken": looks_taken,
        "planned_looks": looks,
    }
    pooled = ev.get("_pooled")
    interval = None
    if pooled is not None:
        rows, y, a, b = pooled
        names = _metric_names(project)
        out["shadow_metrics"] = _finite(evaluate(project.target.task, names, y, a))
        out["champion_metrics"] = _finite(evaluate(project.target.task, names, y, b))
        boot = BootstrapConfig(
            samples=live.samples, confidence=confidence, seed=live.seed, unit="day", min_days=live.min_days
        )
        ci = _expanded(_bootstrap(primary, y, a, b, boot, rows["ds"].to_numpy()), confidence)
        interval = ci
        criteria.append(
            {
                "name": f"live_bootstrap:{primary.name}",
                "passed": ci["low"] is not None and ci["low"] > live.min_gain,
                **{k: ci[k] for k in ("mean", "low", "high", "days", "days_undefined", "samples", "expansion")},
                "confidence": confidence,
                "min_gain": live.min_gain,
                "seed": live.seed,
            }
        )
        for col in project.gate.slices.columns:
            crit = slice_criterion(rows, col, y, a, b, primary, project.gate.slices)
            criteria.append({**crit, "name": f"live_slices:{col}"})
    else:
        criteria.append({"name": f"live_bootstrap:{primary.name}", "passed": False, "detail": "no paired day"})
    failed = [c["name"] for c in criteria if not c["passed"]]
    # A look is a decision: it needs the days and an interval (a look without them is not spent).
    look = bool(due and enough and interval and interval["low"] is not None)
    out["look"] = look
    loses = bool(enough and interval and interval["high"] is not None and interval["high"] < 0)
    next_look = (age_days // live.min_days + 1) * live.min_days
    if look and not failed:
        verdict, why = "promote", "the live criterion passed"
    elif look and loses:
        verdict, why = "retire", f"loses over the window: the {primary.name} gain's interval is below zero"
    elif age_days > project.shadow.max_age_days:
        verdict, why = "retire", f"scored {age_days} days without passing (shadow.max_age_days {out['max_age_days']})"
    elif not enough:
        verdict, why = "wait", "too few paired days"
    elif not look:
        verdict, why = "wait", f"no look today: the next at {next_look} days of age (now {age_days})"
    else:
        verdict, why = "wait", f"failed: {', '.join(failed)}"
    return {**out, "criteria": criteria, "failed": failed, "verdict": verdict, "why": why}


def _age_days(storage: Storage, lane: catalog.Lane, ds: str, started_at: str) -> int:
    """Partition days from the lane's first publication since the shadow (re)started to ``ds`` (0 before it)."""
    from pipelines.core.partitions import parse_ds

    first = None
    for day in catalog.shadow_partitions(storage, lane):
        if day > ds:
            break
        if started_at:
            try:
                published_at = storage.read_json(catalog.scores_manifest(lane, day)).get("published_at") or ""
            except (MissingInput, ValueError):
                continue
            if published_at < started_at:
                continue  # scored before a retirement and a new start: not this shadow's age
        first = day
        break
    return 0 if first is None else (parse_ds(ds) - parse_ds(first)).days + 1


def _trained(c: Any, project: ProjectConfig, versions: list[str | None]) -> list[tuple[str, str]]:
    """The days each version saw, training window and holdout (never live evidence for or against them)."""
    from pipelines.core.shadows import seen_window

    spans = []
    for v in versions:
        if v is not None:
            span = seen_window(c.get_model_version(project.name, v).tags or {})
            if span:
                spans.append(span)
    return spans


def assess(project: ProjectConfig, ds: str, storage: Storage, c: Any, cache: dict | None = None) -> dict[str, Any]:
    """Every active shadow judged over the window ending at ``ds`` against today's champion (no change made).
    ``cache`` collects the days loaded (``{ds: Day | None}``). A shadow that cannot be judged (its version
    gone, a bad record) waits, with the reason; the others are judged."""
    from mlflow.exceptions import MlflowException

    from pipelines.core import shadows
    from pipelines.core.tracking import CHAMPION, alias_version

    mv = alias_version(c, project.name, CHAMPION)
    champion = None if mv is None else str(mv.version)
    cache = {} if cache is None else cache
    decisions = []
    for s in shadows.active(project, c):
        base = {"shadow": s.version, "champion": champion, "source": s.source, "reason": s.reason}
        try:
            trained = _trained(c, project, [s.version, champion])
            ev = evidence(project, s.version, champion, ds, storage, cache, trained)
            lane = catalog.Lane(project.name, s.version)
            looks = int((c.get_model_version(project.name, s.version).tags or {}).get("live_looks") or 0)
            d = judge(project, ev, _age_days(storage, lane, ds, s.started_at), looks)
        except (PipelinesError, ValueError, MlflowException) as exc:
            window = window_days(project, ds)
            d = {"criteria": [], "failed": ["judged"], "verdict": "wait", "why": f"not judged: {exc}"}
            ev = {"window": [window[0], window[-1]], "days": [], "rows": 0, "per_day": []}
        d.update(
            {k: ev[k] for k in ("window", "days", "rows", "per_day")},
            **base,
            started_at=s.started_at,
        )
        decisions.append(d)
    return {
        "model": project.name,
        "ds": ds_str(ds),
        "champion": champion,
        "promotion": project.gate.promotion,
        "shadows": decisions,
    }


def _gain(d: dict[str, Any]) -> float:
    boot = next((c for c in d["criteria"] if c["name"].startswith("live_bootstrap:")), {})
    return boot.get("mean") or 0.0


def run_live_gate(
    project: ProjectConfig, ds: str, *, storage: Storage | None = None, dry_run: bool = False
) -> dict[str, Any]:
    """Judge every active shadow on the window ending at ``ds`` and act: promote one, retire the losers.

    A dry run acts on nothing and records nothing. A day older than one judged already is judged as a
    dry run (``stale``: old evidence never moves today's champion). A retry of a day whose judgement
    promoted already (the alias history names the day) promotes nothing more and reports that promotion.
    Returns :func:`assess`'s result, each shadow's ``verdict`` as acted on, plus ``promoted`` and ``retired``.
    """
    from pipelines.core.champions import history
    from pipelines.core.storage import get_storage
    from pipelines.core.tracking import client

    storage = storage or get_storage()
    ds = ds_str(ds)
    if _current_sha(storage, project, ds) is None:  # a day to come, or halted: judging it would stale the others
        raise MissingInput(f"{project.dataset.name} ds={ds} is not validated: no live day to judge")
    c = client()
    judged = catalog.live_decisions(storage, project.name)
    stale = bool(judged and judged[-1] > ds)
    dry_run = dry_run or stale
    days: dict[str, Day | None] = {}
    from pipelines.core.tracking import PREVIOUS, alias_version

    held = alias_version(c, project.name, PREVIOUS)  # loses its alias if a shadow is promoted
    previous = str(held.version) if held is not None else None
    result = assess(project, ds, storage, c, days)
    done = [e for e in history(c, project.name) if e.get("event") == "promote" and e.get("live_ds") == ds]
    result.update(promoted=done[-1]["champion"] if done else None, retired=[], dry_run=dry_run, stale=stale)
    if not dry_run:  # each day of the window as it stands now (a lane published late is measured too)
        for day in days.values():
            if day is not None and day.scores:
                storage.write_json(catalog.live_record(project.name, day.ds), day_record(project, day))
    for d in sorted((d for d in result["shadows"] if d["verdict"] == "promote"), key=_gain, reverse=True):
        if result["promoted"] is not None:  # not a look spent: judged again at its next one
            d.update(verdict="wait", look=False, why=f"v{result['promoted']} was promoted on this day")
            continue
        if project.gate.promotion != "live" and not _holdout_passes(project, d):
            continue
        if not dry_run and not _promote(c, project, ds, d):
            continue
        result["promoted"] = d["shadow"]
    _act_on_the_rest(c, project, ds, result)
    # Statuses changed: the cards follow (again on a retry, which may have died before writing them).
    if not dry_run and (result["promoted"] or result["retired"]):
        from pipelines.training.card import refresh_cards

        was = [d["champion"] for d in result["shadows"] if d["shadow"] == result["promoted"]]
        refresh_cards(project, [result["promoted"], *was, previous, *result["retired"]], c)
    if not dry_run:
        storage.write_json(catalog.live_decision(project.name, ds), _public(result))
        storage.write_text(catalog.live_html(project.name, ds), render_html(project, result))
    for d in result["shadows"]:
        log.info(
            "%s live gate %s%s: shadow v%s vs champion v%s: %s (%s)",
            project.name,
            ds,
            " (stale: not acted on)" if stale else "",
            d["shadow"],
            d["champion"],
            d["verdict"],
            d["why"],
        )
    return _public(result)


def _act_on_the_rest(c: Any, project: ProjectConfig, ds: str, result: dict[str, Any]) -> None:
    """Retire the losers and record every other decision on its version (nothing on a dry run)."""
    from pipelines.core import shadows

    for d in result["shadows"]:
        if d["verdict"] == "retire":
            result["retired"].append(d["shadow"])
        if result["dry_run"] or d["shadow"] == result["promoted"]:
            continue
        _log_decision(c, project, ds, d)
        if d["verdict"] == "retire":
            shadows.end(project, d["shadow"], "retired", f"live gate on {ds}: {d['why']}", c)


def _public(result: dict[str, Any]) -> dict[str, Any]:
    """The result without the pooled rows."""
    return {**result, "shadows": [{k: v for k, v in d.items() if not k.startswith("_")} for d in result["shadows"]]}


def _holdout_passes(project: ProjectConfig, d: dict[str, Any]) -> bool:
    """``gate.promotion`` holdout or both: the shadow's holdout gate against today's champion (dry: nothing
    recorded) must pass too; else it stays a shadow, and says why."""
    from pipelines.training.gate import evaluate_gate

    try:
        holdout = evaluate_gate(project, d["shadow"])
    except PipelinesError as exc:  # its holdout is gone, or it was not trained by pipelines
        holdout = {"passed": False, "failed": [f"holdout gate not run: {exc}"]}
    d["holdout_gate"] = {"passed": bool(holdout.get("passed")), "failed": holdout.get("failed", [])}
    if not holdout.get("passed"):
        d.update(verdict="wait", why=f"live passed, the holdout gate did not ({', '.join(holdout.get('failed', []))})")
        return False
    return True


def _promote(c: Any, project: ProjectConfig, ds: str, d: dict[str, Any]) -> bool:
    """Move the champion alias to the shadow through the gate's locked move (which ends its shadow state);
    ``False`` if the champion changed meanwhile (the shadow stays, judged again)."""
    from pipelines.training.gate import ChampionChanged, _move_aliases

    uri = _log_decision(c, project, ds, d)
    boot = next(x for x in d["criteria"] if x["name"].startswith("live_bootstrap:"))
    why = (
        f"live gate passed on {d['window'][0]}..{d['window'][1]}: {len(d['days'])} labelled days, "
        f"{d['rows']} rows, {boot['name'].split(':', 1)[1]} gain {boot['mean']:.4f} "
        f"[{boot['low']:.4f}, {boot['high']:.4f}] ({uri})"
    )
    try:
        _move_aliases(c, project, d["shadow"], d["champion"], why, uri, live_ds=ds)
    except ChampionChanged as exc:
        d.update(verdict="wait", look=False, why=f"the champion changed during the live gate: {exc}")
        return False
    d["why"] = why
    return True


def _log_decision(c: Any, project: ProjectConfig, ds: str, d: dict[str, Any]) -> str | None:
    """The shadow's live decision on its MLflow run (JSON and Markdown) and its latest figures as tags; a look
    is counted (``live_looks``). ``None`` when the version is gone."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        run_id = c.get_model_version(project.name, d["shadow"]).run_id
    except MlflowException as exc:
        log.warning("%s v%s: live decision not recorded, the version is gone: %s", project.name, d["shadow"], exc)
        return None
    uri = f"runs:/{run_id}/{catalog.LIVE_GATE_DECISION}"
    # The registry tags first: the look count must not depend on the run's artifact store.
    tags = {"live_verdict": d["verdict"], "live_days": str(len(d["days"])), "live_at": ds, "live_decision_uri": uri}
    if d.get("look"):  # the looks this age has had (a missed look day is not made up twice)
        tags["live_looks"] = str(d["age_days"] // project.gate.live.min_days)
    for k, v in tags.items():
        c.set_model_version_tag(project.name, d["shadow"], k, v)
    try:
        public = {k: v for k, v in d.items() if not k.startswith("_")}
        with mlflow.start_run(run_id=run_id):
            mlflow.log_dict({"model": project.name, "ds": ds, **public}, catalog.LIVE_GATE_DECISION)
            mlflow.log_text(render_markdown(project, ds, public), catalog.LIVE_GATE_DECISION_MD)
        c.log_batch(run_id, metrics=_live_metrics(ds, d))
    except MlflowException as exc:  # a deleted run, an artifact store down: the decision stands, its file not
        log.warning("%s v%s: live decision not logged on its run: %s", project.name, d["shadow"], exc)
    return uri


def _live_metrics(ds: str, d: dict[str, Any]) -> list[Any]:
    """The window's figures on the shadow's run, one step per judged partition day (for the MLflow UI's
    charts): ``shadow_window_<metric>`` and ``champion_window_<metric>`` on the paired rows, and the primary
    metric's gain with its interval (``live_gain``, ``live_gain_low``, ``live_gain_high``)."""
    from mlflow.entities import Metric

    day = dt.date.fromisoformat(ds)
    step = metric_step(day)
    ts = int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp() * 1000)
    out = []
    for who in ("shadow", "champion"):
        for name, value in (d.get(f"{who}_metrics") or {}).items():
            if value is not None:
                out.append(Metric(f"{who}_window_{name}", float(value), ts, step))
    boot = next((c for c in d["criteria"] if c["name"].startswith("live_bootstrap:")), {})
    for key, name in (("mean", "live_gain"), ("low", "live_gain_low"), ("high", "live_gain_high")):
        if boot.get(key) is not None:
            out.append(Metric(name, float(boot[key]), ts, step))
    return out


def render_markdown(project: ProjectConfig, ds: str, d: dict[str, Any]) -> str:
    lines = [
        f"# Live gate {ds}: {project.name} shadow v{d['shadow']} vs champion v{d['champion']}: **{d['verdict']}**",
        "",
        f"- {d['why']}",
        f"- window {d['window'][0]}..{d['window'][1]}: {len(d['days'])} paired day(s), {d['rows']} labelled rows",
        "",
        "| criterion | result | figures |",
        "|---|---|---|",
    ]
    for crit in d["criteria"]:
        figures = {
            k: (round(v, 5) if isinstance(v, float) else v)
            for k, v in crit.items()
            if k not in ("name", "passed", "slices", "unchecked")
        }
        lines.append(f"| {crit['name']} | {'pass' if crit['passed'] else '**FAIL**'} | `{figures}` |")
    return "\n".join(lines) + "\n"


def render_html(project: ProjectConfig, result: dict[str, Any]) -> str:
    """The live report: per shadow, the primary metric per day (champion and shadow) and the interval."""
    import html

    metric = project.metrics.primary
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(project.name)}: live evidence {result['ds']}</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px}.promote{color:#070}.retire{color:#a00}</style></head><body>",
        f"<h1>{html.escape(project.name)}: shadows against champion v{html.escape(str(result['champion']))}, "
        f"window ending {result['ds']}</h1>",
        f"<p>Promotion mode: <b>{result['promotion']}</b>. Metric: <b>{html.escape(metric)}</b>.</p>",
    ]
    if not result["shadows"]:
        parts.append("<p>No active shadow version.</p>")
    for d in result["shadows"]:
        boot = next((c for c in d["criteria"] if c["name"].startswith("live_bootstrap:")), {})
        interval = (
            f"{boot['mean']:+.4f} [{boot['low']:+.4f}, {boot['high']:+.4f}]"
            if boot.get("low") is not None
            else "no interval yet"
        )
        parts += [
            f"<h2>shadow v{d['shadow']}: <span class='{d['verdict']}'>{d['verdict']}</span></h2>",
            f"<p>{html.escape(d['why'])}. {len(d['days'])} paired day(s), {d['rows']} labelled rows, "
            f"{metric} gain {interval} ({project.gate.live.confidence:.0%}, by day).</p>",
            _svg(d["per_day"]),
            "<table><tr><th>criterion</th><th>result</th></tr>",
            *(
                f"<tr><td>{html.escape(c['name'])}</td><td>{'pass' if c['passed'] else 'FAIL'}</td></tr>"
                for c in d["criteria"]
            ),
            "</table>",
        ]
    parts.append("</body></html>")
    return "\n".join(parts)


def _svg(per_day: list[dict[str, Any]], width: int = 640, height: int = 200) -> str:
    """Two lines (champion grey, shadow blue) of the primary metric per paired day."""
    points = [(p["champion"], p["shadow"]) for p in per_day if p["champion"] is not None and p["shadow"] is not None]
    if len(points) < 2:
        return "<p>(fewer than two paired days: no chart yet)</p>"
    values = [v for pair in points for v in pair]
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0

    def line(i: int) -> str:
        xs = [20 + k * (width - 40) / (len(points) - 1) for k in range(len(points))]
        ys = [height - 20 - (p[i] - lo) / span * (height - 40) for p in points]
        return " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys, strict=True))

    return (
        f"<svg width='{width}' height='{height}' role='img'>"
        f"<polyline fill='none' stroke='#888' stroke-width='2' points='{line(0)}'/>"
        f"<polyline fill='none' stroke='#06c' stroke-width='2' points='{line(1)}'/>"
        f"<text x='20' y='14' font-size='12'>{hi:.4f}</text><text x='20' y='{height - 4}' font-size='12'>"
        f"{lo:.4f}</text><text x='{width - 200}' y='14' font-size='12' fill='#06c'>shadow</text>"
        f"<text x='{width - 120}' y='14' font-size='12' fill='#888'>champion</text></svg>"
    )


def status(project: ProjectConfig, ds: str | None = None, storage: Storage | None = None) -> dict[str, Any]:
    """What ``pipelines shadow status`` prints: each active shadow's window, figures and the decision the
    live gate would take on ``ds`` (default: the newest validated day). Records nothing."""
    from pipelines.core.storage import get_storage
    from pipelines.core.tracking import client

    storage = storage or get_storage()
    if ds is None:
        days = catalog.validated_partitions(storage, project.dataset.name)
        if not days:
            raise MissingInput(f"{project.dataset.name}: no validated partition to judge shadows on")
        ds = days[-1]
    return _public(assess(project, ds_str(ds), storage, client()))


def add_shadow(model: str, version: str, reason: str) -> dict[str, Any]:
    """Start shadowing a registered version (``pipelines shadow add``).

    Raises:
        MissingInput: no such version.
        ConfigError: it is the champion, or the project keeps no shadows.
    """
    from mlflow.exceptions import MlflowException

    from pipelines.core import shadows
    from pipelines.core.config import load_project
    from pipelines.core.errors import ConfigError
    from pipelines.core.tracking import CHAMPION, alias_version, client

    project = load_project(model)
    version = catalog.version_number(version)
    c = client()
    try:
        c.get_model_version(project.name, version)
    except MlflowException:
        raise MissingInput(f"{project.name}: no registered version {version}") from None
    champion = alias_version(c, project.name, CHAMPION)
    if champion is not None and str(champion.version) == version:
        raise ConfigError(f"{project.name} v{version} is the champion: a champion is not its own shadow")
    started = shadows.start(project, version, reason, c)
    from pipelines.training.card import refresh_cards

    refresh_cards(project, [version, *started.get("retired", [])], c)
    return started


def retire_shadow(model: str, version: str, reason: str) -> dict[str, Any]:
    """Stop shadowing a version (``pipelines shadow retire``), recorded on it."""
    from pipelines.core import shadows
    from pipelines.core.config import load_project
    from pipelines.core.tracking import client

    project = load_project(model)
    version = catalog.version_number(version)
    if version not in {s.version for s in shadows.active_unlimited(project, client())}:
        raise MissingInput(f"{project.name} v{version} is not an active shadow")
    shadows.end(project, version, "retired", reason)
    from pipelines.training.card import refresh_cards

    refresh_cards(project, [version])
    return {"version": version, "reason": reason}


def champion_lane_ready(project: ProjectConfig, ds: str, storage: Storage | None = None) -> bool:
    """Whether BI's lane has published day ``ds`` over its current validated data (the live gate waits for it)."""
    from pipelines.core.storage import get_storage

    storage = storage or get_storage()
    sha = _current_sha(storage, project, ds_str(ds))
    key = catalog.scores_manifest(project.name, ds_str(ds))
    if sha is None or not storage.exists(key):
        return False
    try:
        return (storage.read_json(key).get("input") or {}).get("sha256") == sha
    except ValueError:
        return False
