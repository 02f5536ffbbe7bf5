"""The promotion gate: a challenger becomes champion only when the evidence says it is better.

Challenger and champion are scored on the same holdout, restricted to days
neither trained on. Criteria, all of which must pass:

1. ``floors``: absolute bounds on configured metrics (the only criteria when
   there is no champion yet);
2. ``min_change``: minimum absolute and/or relative improvement per metric;
3. ``bootstrap``: a seeded paired bootstrap confidence interval of the
   primary metric's gain; its lower bound must be above ``-tolerance``;
4. ``slices``: on each slice column, every value with at least ``min_size``
   rows may lose at most ``tolerance`` of the primary metric.

The decision (each criterion, its numbers, pass or fail) is saved as JSON and
Markdown on the challenger's MLflow run and summarised in model-version tags.
On pass the ``champion`` alias moves to the challenger and the former champion
gets ``previous-champion``; on fail nothing moves and
:class:`~pipelines.core.errors.GateRejected` (exit 4) names the failed criteria.

Alias moves happen under a per-model lock and only if the champion is still
the one the gate evaluated against, so two gates racing cannot leave the
registry inconsistent: the loser fails with a named error and can re-run.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pipelines.core.errors import GateRejected, MissingInput, PipelinesError
from pipelines.core.tracking import CHAMPION, PREVIOUS

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from pipelines.core.config import ProjectConfig

log = logging.getLogger(__name__)


class ChampionChanged(PipelinesError):
    """Another promotion moved the champion while this gate was evaluating."""

    exit_code = 4


@contextlib.contextmanager
def promotion_lock(model: str) -> Iterator[None]:
    """Serialise alias moves for one model (a file lock beside the local MLflow store).

    With a tracking server the same lock file lives in the profile's data root
    when it is local; for an S3 data root the re-check of the champion under
    :func:`_move_aliases` is what keeps the registry consistent.
    """
    import fcntl

    from pipelines.core.settings import get_settings

    settings = get_settings()
    if settings.is_s3:
        yield
        return
    path = os.path.join(settings.data_root, "mlflow", f".gate-{model}.lock")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _alias_version(c: Any, model: str, alias: str) -> str | None:
    from pipelines.core.tracking import alias_version

    mv = alias_version(c, model, alias)  # an outage raises instead of reading as "no alias"
    return None if mv is None else str(mv.version)


def _holdout(project: ProjectConfig, c: Any, version: str) -> pd.DataFrame:
    """The challenger's holdout rows (written with its training set)."""
    from pipelines.core import catalog
    from pipelines.core.storage import get_storage

    mv = c.get_model_version(project.name, version)
    end_ds = c.get_run(mv.run_id).data.tags.get("end_ds")
    if not end_ds:
        raise MissingInput(f"{project.name} v{version}: its run has no end_ds tag; was it trained by pipelines?")
    key = catalog.training_file(project.name, end_ds, catalog.HOLDOUT_FILE)
    return get_storage().read_parquet(key).to_pandas()


def _bootstrap(
    metric: Any, y: np.ndarray, a: np.ndarray, b: np.ndarray, samples: int, seed: int, confidence: float
) -> dict[str, float]:
    import numpy as np

    rng = np.random.default_rng(seed)
    n = len(y)
    gains = []
    for _ in range(samples):
        idx = rng.integers(0, n, n)
        ga, gb = metric.fn(y[idx], a[idx]), metric.fn(y[idx], b[idx])
        if ga == ga and gb == gb:  # skip degenerate resamples (one class)
            gains.append(metric.gain(ga, gb))
    g = np.asarray(gains)
    alpha = (1 - confidence) / 2
    return {
        "mean": float(g.mean()),
        "low": float(np.quantile(g, alpha)),
        "high": float(np.quantile(g, 1 - alpha)),
        "samples": len(g),
    }


def slice_criterion(
    rows: pd.DataFrame, col: str, y: np.ndarray, challenger: np.ndarray, champion: np.ndarray, metric: Any, cfg: Any
) -> dict[str, Any]:
    """Per-slice non-regression on one column: no slice of ``min_size`` rows may lose more than ``tolerance``."""
    worst = None
    slices = []
    for value, idx in rows.groupby(col).indices.items():
        if len(idx) < cfg.min_size:
            continue
        a, p = metric.fn(y[idx], challenger[idx]), metric.fn(y[idx], champion[idx])
        if a != a or p != p:  # undefined on this slice (one class)
            continue
        gain = metric.gain(a, p)
        slices.append({"value": str(value), "rows": len(idx), "challenger": a, "champion": p, "gain": gain})
        worst = gain if worst is None else min(worst, gain)
    return {
        "name": f"slices:{col}",
        "passed": worst is None or worst >= -cfg.tolerance,
        "worst_gain": worst,
        "tolerance": cfg.tolerance,
        "min_size": cfg.min_size,
        "slices": slices,
    }


def _holdout_scores(model_uri: str, rows: Any, task: str) -> Any:
    """A registered model's scores on the holdout rows, through its pyfunc flavour.

    Only the columns of the model's input signature are passed: each model
    takes what it was trained on, and the log is spared MLflow's warning
    about every other validated column.
    """
    import mlflow

    from pipelines.core.model import predict_scores

    model = mlflow.pyfunc.load_model(model_uri)
    schema = model.metadata.get_input_schema()
    columns = [c for c in schema.input_names() if c in rows.columns] if schema else list(rows.columns)
    return predict_scores(model, rows[columns], task)


def evaluate_gate(project: ProjectConfig, candidate: str | None = None) -> dict[str, Any]:
    """Score challenger and champion on a common holdout and check every criterion (no registry change)."""
    from pipelines.core.tracking import client
    from pipelines.training.dataset import labelled

    c = client()
    versions = c.search_model_versions(f"name='{project.name}'")
    if not versions:
        raise MissingInput(f"{project.name}: no registered version to gate; run `pipelines train` first")
    candidate = str(candidate or max(int(v.version) for v in versions))
    champion = _alias_version(c, project.name, CHAMPION)
    decision: dict[str, Any] = {
        "model": project.name,
        "candidate": candidate,
        "champion": champion,
        "primary_metric": project.metrics.primary,
        "evaluated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "criteria": [],
        "notes": [],
    }
    if champion == candidate:
        decision.update(passed=False, noop=True, failed=[])
        decision["notes"].append(f"version {candidate} is already the champion: nothing to do")
        return decision
    holdout = _common_holdout(project, c, candidate, champion, decision["notes"])
    rows, y = labelled(holdout, project)
    decision["holdout_rows"] = len(rows)
    decision["holdout_days"] = sorted(holdout["ds"].unique().tolist())
    if len(rows) == 0:
        decision["criteria"].append(
            {"name": "common_holdout", "passed": False, "detail": "no holdout day that neither model trained on"}
        )
        decision.update(passed=False, failed=["common_holdout"])
        return decision
    task = project.target.task
    ch_score = _holdout_scores(f"models:/{project.name}/{candidate}", rows, task)
    cp_score = None if champion is None else _holdout_scores(f"models:/{project.name}/{champion}", rows, task)
    verdict = judge(project, rows, y.to_numpy(), ch_score, cp_score)
    decision["notes"] += verdict.pop("notes")
    decision.update(verdict)
    return decision


def _common_holdout(project: ProjectConfig, c: Any, candidate: str, champion: str | None, notes: list[str]) -> Any:
    """The challenger's holdout minus every day the champion trained on."""
    from pipelines.core.tracking import window

    holdout = _holdout(project, c, candidate)
    if champion is None:
        return holdout
    seen = window(c.get_model_version(project.name, champion).tags, "training_window")
    if seen:
        before = holdout["ds"].nunique()
        holdout = holdout[(holdout["ds"] < seen[0]) | (holdout["ds"] > seen[1])]
        dropped = before - holdout["ds"].nunique()
        if dropped:
            notes.append(f"{dropped} holdout day(s) dropped: champion v{champion} trained on {seen[0]}..{seen[1]}")
    return holdout


def judge(
    project: ProjectConfig, rows: pd.DataFrame, y: np.ndarray, challenger: np.ndarray, champion: np.ndarray | None
) -> dict[str, Any]:
    """Every criterion on the common holdout's labels and both models' scores (pure).

    Without a champion only the floors apply. Returns ``criteria``,
    ``challenger_metrics`` (and ``champion_metrics``), ``passed``, ``failed``
    and ``notes``.
    """
    from pipelines.core.metrics import METRICS, evaluate

    cfg = project.gate
    task = project.target.task
    primary = METRICS[project.metrics.primary]
    names = list(dict.fromkeys([primary.name, *project.metrics.secondary, *cfg.floors, *cfg.min_change]))
    ch = evaluate(task, names, y, challenger)
    out: dict[str, Any] = {"challenger_metrics": ch, "notes": []}
    criteria = [_floor(name, bound, ch) for name, bound in cfg.floors.items()]
    if champion is not None:
        cp = evaluate(task, names, y, champion)
        out["champion_metrics"] = cp
        criteria += [_min_change(name, change, ch, cp) for name, change in cfg.min_change.items()]
        b = cfg.bootstrap
        ci = _bootstrap(primary, y, challenger, champion, b.samples, b.seed, b.confidence)
        criteria.append(
            {
                "name": f"bootstrap:{primary.name}",
                "passed": ci["low"] > -b.tolerance,
                **ci,
                "confidence": b.confidence,
                "tolerance": b.tolerance,
                "seed": b.seed,
            }
        )
        criteria += [
            slice_criterion(rows, col, y, challenger, champion, primary, cfg.slices) for col in cfg.slices.columns
        ]
    else:
        out["notes"].append("no champion yet: only the floors apply")
    failed = [c_["name"] for c_ in criteria if not c_["passed"]]
    return {**out, "criteria": criteria, "passed": not failed, "failed": failed}


def _floor(name: str, bound: float, ch: dict[str, float]) -> dict[str, Any]:
    """An absolute bound on one of the challenger's metrics (a NaN never passes)."""
    from pipelines.core.metrics import METRICS

    m = METRICS[name]
    ok = ch[name] == ch[name] and (ch[name] >= bound if m.greater_is_better else ch[name] <= bound)
    return {
        "name": f"floor:{name}",
        "passed": bool(ok),
        "value": ch[name],
        "bound": bound,
        "direction": ">=" if m.greater_is_better else "<=",
    }


def _min_change(name: str, change: Any, ch: dict[str, float], cp: dict[str, float]) -> dict[str, Any]:
    """The minimum absolute and/or relative improvement over the champion on one metric."""
    from pipelines.core.metrics import METRICS

    gain = METRICS[name].gain(ch[name], cp[name])
    rel = gain / abs(cp[name]) if cp[name] else float("inf")
    ok = (change.absolute is None or gain >= change.absolute) and (change.relative is None or rel >= change.relative)
    return {
        "name": f"min_change:{name}",
        "passed": bool(ok),
        "challenger": ch[name],
        "champion": cp[name],
        "gain": gain,
        "relative_gain": rel,
        "required_absolute": change.absolute,
        "required_relative": change.relative,
    }


def _numbers(criterion: dict[str, Any]) -> str:
    """A criterion's figures as compact JSON (the per-slice table is left to the decision file)."""
    nums = {
        k: (round(v, 5) if isinstance(v, float) else v)
        for k, v in criterion.items()
        if k not in ("name", "passed", "slices")
    }
    return json.dumps(nums)


def render_markdown(d: dict[str, Any]) -> str:
    verdict = "PROMOTE" if d.get("passed") else "KEEP CHAMPION"
    lines = [f"# Gate: {d['model']} v{d['candidate']} vs champion {d.get('champion') or '(none)'}: **{verdict}**", ""]
    lines += [f"- {n}" for n in d.get("notes", [])]
    lines += [
        "",
        f"Holdout: {d.get('holdout_rows', 0)} rows, days {', '.join(d.get('holdout_days', []))}",
        "",
        "| criterion | result | numbers |",
        "|---|---|---|",
    ]
    for c in d.get("criteria", []):
        lines.append(f"| {c['name']} | {'pass' if c['passed'] else '**FAIL**'} | `{_numbers(c)}` |")
    return "\n".join(lines) + "\n"


def _record(c: Any, project: ProjectConfig, d: dict[str, Any]) -> None:
    import mlflow

    from pipelines.core import catalog

    run_id = c.get_model_version(project.name, d["candidate"]).run_id
    with mlflow.start_run(run_id=run_id):
        mlflow.log_dict(d, catalog.GATE_DECISION)
        mlflow.log_text(render_markdown(d), catalog.GATE_DECISION_MD)
    d["decision_uri"] = f"runs:/{run_id}/{catalog.GATE_DECISION}"
    tags = {
        "gate_decision": "promoted" if d["passed"] else "rejected",
        "gate_failed": ",".join(d["failed"]) or "-",
        "gate_champion_at_evaluation": d.get("champion") or "-",
        "gate_at": d["evaluated_at"],
        "gate_decision_uri": d["decision_uri"],
    }
    for k, v in tags.items():
        c.set_model_version_tag(project.name, d["candidate"], k, v)


def _move_aliases(c: Any, project: ProjectConfig, new: str, expected: str | None, why: str) -> None:
    """Point ``champion`` at ``new`` (and ``previous-champion`` at the old one), atomically per model."""
    with promotion_lock(project.name):
        current = _alias_version(c, project.name, CHAMPION)
        if current != expected:
            raise ChampionChanged(
                f"{project.name}: champion moved from {expected} to {current} during the gate; re-run the gate"
            )
        if current is not None:
            c.set_registered_model_alias(project.name, PREVIOUS, current)
        c.set_registered_model_alias(project.name, CHAMPION, new)
        record = {
            "champion": new,
            "previous": current,
            "why": why,
            "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        c.set_model_version_tag(project.name, new, "promoted_from", current or "-")
        c.set_model_version_tag(project.name, new, "promotion_reason", why)
        c.set_registered_model_tag(project.name, "last_alias_change", json.dumps(record, sort_keys=True))


def run_gate(project: ProjectConfig, candidate: str | None = None, *, dry_run: bool = False) -> dict[str, Any]:
    """Evaluate, record, and promote when every criterion passes.

    Raises:
        GateRejected: a criterion failed; the champion is untouched (exit 4).
        ChampionChanged: another promotion won the race (exit 4).
    """
    from pipelines.core.tracking import client

    d = evaluate_gate(project, candidate)
    if d.get("noop"):
        d["promoted"] = False
        return d
    c = client()
    _record(c, project, d)
    d["promoted"] = False
    if d["passed"] and not dry_run:
        why = f"gate passed: {', '.join(x['name'] for x in d['criteria'])} ({d['decision_uri']})"
        _move_aliases(c, project, d["candidate"], d["champion"], why)
        d["promoted"] = True
    for crit in d["criteria"]:  # the task log shows what the decision file holds
        verdict = "pass" if crit["passed"] else "FAIL"
        log.info("%s gate v%s: %s %s %s", project.name, d["candidate"], crit["name"], verdict, _numbers(crit))
    log.info(
        "%s gate v%s vs %s: %s%s; decision %s",
        project.name,
        d["candidate"],
        d["champion"] or "-",
        "PROMOTED" if d["promoted"] else ("passed (dry run)" if d["passed"] else "rejected"),
        f"; failed: {', '.join(d['failed'])}" if d["failed"] else "",
        d.get("decision_uri", "(dry run: not recorded)"),
    )
    if not d["passed"]:
        raise GateRejected(
            f"{project.name} v{d['candidate']} rejected by the gate: failed {', '.join(d['failed'])}; "
            f"champion stays {d['champion'] or '(none)'}",
            decision=d,
        )
    return d


def rollback(project: ProjectConfig, reason: str = "manual rollback") -> dict[str, Any]:
    """Make ``previous-champion`` the champion again; the rolled-back version becomes ``previous-champion``."""
    from pipelines.core.tracking import client

    c = client()
    with promotion_lock(project.name):
        current = _alias_version(c, project.name, CHAMPION)
        previous = _alias_version(c, project.name, PREVIOUS)
        if previous is None:
            raise MissingInput(f"{project.name}: no previous-champion to roll back to")
        c.set_registered_model_alias(project.name, CHAMPION, previous)
        if current is not None:
            c.set_registered_model_alias(project.name, PREVIOUS, current)
            c.set_model_version_tag(project.name, current, "rolled_back", reason)
        record = {
            "champion": previous,
            "previous": current,
            "why": f"rollback: {reason}",
            "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        c.set_registered_model_tag(project.name, "last_alias_change", json.dumps(record, sort_keys=True))
    log.info("%s: rolled back champion %s -> %s (%s)", project.name, current, previous, reason)
    return record
