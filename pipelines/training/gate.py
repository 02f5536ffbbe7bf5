"""The promotion gate: a challenger becomes champion only when the evidence says it is better.

Challenger and champion are scored on the challenger's own holdout (read
from its immutable snapshot and checked against the digest recorded at
training), restricted to days neither trained on. Criteria, all of which must
pass:

0. ``holdout_size``: at least ``min_holdout_rows`` labelled rows and, for a
   classifier, ``min_class_rows`` of each class; below that no metric is
   trusted and the challenger is rejected with that reason;
1. ``floors``: absolute bounds on configured metrics (the only criteria when
   there is no champion yet, so a first champion needs at least one floor);
2. ``min_change``: minimum absolute and/or relative improvement per metric;
3. ``bootstrap``: a seeded paired bootstrap confidence interval of the
   primary metric's gain, resampling whole partition days by default (rows
   of one day share weather and schedules: resampling rows would understate
   the spread); its lower bound must be above ``-tolerance``;
4. ``slices``: on each slice column, every value with at least ``min_size``
   rows may lose at most ``tolerance`` of the primary metric; values too
   small (or of one class) are listed as not checked, and a column with no
   checked value rejects or is recorded as not checked (``slices.unchecked``),
   never passes silently. A slice column is a column of the holdout rows or
   a derived feature of the project (registered or an expression), computed
   from the rows as the model computes it.

A version rolled back as bad, or one trained on the same data, code and
config as such a version, is refused (``not_rolled_back``) unless forced.

The decision (each criterion, its numbers, pass or fail) is saved as JSON and
Markdown on the challenger's MLflow run and summarised in model-version tags;
a dry run records nothing. On pass, under the model's promotion lock
(:mod:`pipelines.core.locks`: a file lock on a local data root, a conditional
object on S3), the champion is re-checked to be the one the gate evaluated
against, the ``champion`` alias moves (the commit point), the move is
appended to the alias history (:mod:`pipelines.core.champions`) and only then
is the version tagged ``promoted``. A gate that loses the race fails with
:class:`ChampionChanged` and its version is tagged ``superseded``. On fail
nothing moves and :class:`~pipelines.core.errors.GateRejected` (exit 4) names
the failed criteria.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pipelines.core.errors import ConfigError, GateRejected, MissingInput, PipelinesError
from pipelines.core.tracking import CHAMPION, PREVIOUS

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from pipelines.core.config import ProjectConfig

log = logging.getLogger(__name__)


class ChampionChanged(PipelinesError):
    """Another promotion moved the champion while this gate was evaluating."""

    exit_code = 4


class HoldoutChanged(MissingInput):
    """The candidate's holdout on storage is not the one it was trained with (or is gone): retrain it."""


@contextlib.contextmanager
def promotion_lock(model: str) -> Iterator[Any]:
    """Serialise alias moves of one model, on every storage and tracking backend (see :mod:`pipelines.core.locks`).

    Inside, aliases and history are brought into agreement first (``lock.reconciled`` holds what that did).
    """
    from pipelines.core import champions, locks
    from pipelines.core.storage import get_storage
    from pipelines.core.tracking import client

    with locks.hold(get_storage(), f"promote-{model}", timeout=120) as lock:
        lock.reconciled = champions.reconcile(client(), model)  # type: ignore[attr-defined]
        yield lock


def _alias_version(c: Any, model: str, alias: str) -> str | None:
    from pipelines.core.tracking import alias_version

    mv = alias_version(c, model, alias)  # an outage raises instead of reading as "no alias"
    return None if mv is None else str(mv.version)


def _holdout(project: ProjectConfig, c: Any, version: str) -> pd.DataFrame:
    """The challenger's own holdout rows, checked against the digest its training recorded.

    Training writes an immutable snapshot of the holdout named by its MD5
    (:func:`pipelines.core.catalog.holdout_snapshot`) and tags the version
    ``holdout_md5``; a later training with the same end date cannot touch it.
    A version from before the snapshots is read from its training folder and
    checked against the training-set record logged with its run.

    Raises:
        HoldoutChanged: the snapshot is gone or its bytes are not the recorded ones.
        MissingInput: the version was not trained by pipelines.
    """
    import hashlib
    import io

    import pyarrow.parquet as pq

    from pipelines.core import catalog
    from pipelines.core.storage import get_storage

    storage = get_storage()
    mv = c.get_model_version(project.name, version)
    digest = (mv.tags or {}).get("holdout_md5")
    if digest:
        key = catalog.holdout_snapshot(project.name, digest)
    else:
        end_ds = c.get_run(mv.run_id).data.tags.get("end_ds")
        if not end_ds:
            raise MissingInput(f"{project.name} v{version}: its run has no end_ds tag; was it trained by pipelines?")
        key = catalog.training_file(project.name, end_ds, catalog.HOLDOUT_FILE)
        digest = _logged_holdout_md5(mv.run_id)
        if digest is None:
            raise HoldoutChanged(
                f"{project.name} v{version}: no holdout digest recorded with the version or its run, so its "
                "holdout cannot be checked; retrain to gate a version"
            )
    try:
        data = storage.read_bytes(key)
    except MissingInput:
        raise HoldoutChanged(
            f"{project.name} v{version}: its holdout {storage.uri(key)} is gone; retrain to gate a version"
        ) from None
    found = hashlib.md5(data).hexdigest()  # noqa: S324 - the digest DVC and the training record use
    if found != digest:
        raise HoldoutChanged(
            f"{project.name} v{version}: the holdout at {storage.uri(key)} (md5 {found}) is not the one the version "
            f"was trained with (md5 {digest}); a later training replaced it: retrain to gate a version"
        )
    return pq.read_table(io.BytesIO(data)).to_pandas()


def _logged_holdout_md5(run_id: str) -> str | None:
    """The holdout's MD5 in the training-set record logged with a run (versions from before the snapshots)."""
    import mlflow

    from pipelines.core import catalog

    try:
        record = mlflow.artifacts.load_dict(f"runs:/{run_id}/{catalog.TRAINING_SET_RECORD}")
    except Exception:  # noqa: BLE001 - no record: nothing to check against
        return None
    return (record.get("files") or {}).get(catalog.HOLDOUT_FILE)


def _bootstrap(
    metric: Any,
    y: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    cfg: Any,
    days: np.ndarray | None = None,
) -> dict[str, Any]:
    """Paired bootstrap of the primary metric's gain (challenger over champion, in its better direction).

    ``cfg.unit == "day"`` (the default) respects how the holdout is
    clustered: rows of one day share weather and schedules, so they are not
    independent draws. The statistic is the gain on each partition day
    (what a daily scoring run experiences), averaged over days weighted by
    rows; whole days are resampled. Days on which the metric is undefined
    (one class) are left out and counted. Fewer than ``cfg.min_days`` usable
    days give no interval (``low`` is ``None``: the criterion fails).

    ``cfg.unit == "row"`` resamples rows of the pooled holdout: narrower, and
    honest only when rows of a day are as unlike as rows of different days.
    Resamples on which the metric is undefined are skipped; fewer than half
    defined give no interval.
    """
    import numpy as np

    rng = np.random.default_rng(cfg.seed)
    out: dict[str, Any] = {"unit": cfg.unit, "samples": cfg.samples}
    if cfg.unit == "day":
        labels, codes = np.unique(np.asarray(days), return_inverse=True)
        gains, weights, skipped = [], [], []
        for i, day in enumerate(labels):
            idx = np.flatnonzero(codes == i)
            ga, gb = metric.fn(y[idx], a[idx]), metric.fn(y[idx], b[idx])
            if ga == ga and gb == gb:
                gains.append(metric.gain(ga, gb))
                weights.append(len(idx))
            else:
                skipped.append(str(day))
        g, w = np.asarray(gains), np.asarray(weights, dtype="float64")
        out.update(days=len(g), days_undefined=skipped, day_gains=[round(float(x), 6) for x in g])
        if len(g) < cfg.min_days:
            return {
                **out,
                "mean": None,
                "low": None,
                "high": None,
                "detail": f"{len(g)} holdout day(s) with {metric.name} defined; a day-level bootstrap needs "
                f"{cfg.min_days} (gate.bootstrap.min_days)",
            }
        picks = rng.integers(0, len(g), (cfg.samples, len(g)))
        boot = (g[picks] * w[picks]).sum(axis=1) / w[picks].sum(axis=1)
        mean = float((g * w).sum() / w.sum())
    else:
        n = len(y)
        values = []
        for _ in range(cfg.samples):
            idx = rng.integers(0, n, n)
            ga, gb = metric.fn(y[idx], a[idx]), metric.fn(y[idx], b[idx])
            if ga == ga and gb == gb:
                values.append(metric.gain(ga, gb))
        out["valid"] = len(values)
        if len(values) < cfg.samples / 2:
            return {
                **out,
                "mean": None,
                "low": None,
                "high": None,
                "detail": f"{metric.name} is undefined on {cfg.samples - len(values)} of {cfg.samples} resamples",
            }
        boot = np.asarray(values)
        mean = float(boot.mean())
    alpha = (1 - cfg.confidence) / 2
    return {**out, "mean": mean, "low": float(np.quantile(boot, alpha)), "high": float(np.quantile(boot, 1 - alpha))}


def slice_criterion(
    rows: pd.DataFrame, col: str, y: np.ndarray, challenger: np.ndarray, champion: np.ndarray, metric: Any, cfg: Any
) -> dict[str, Any]:
    """Per-slice non-regression on one column: no slice of ``min_size`` rows may lose more than ``tolerance``.

    Values under ``min_size`` rows, or where the metric is undefined (one
    class), are listed under ``unchecked``. A column with no checked value is
    ``not_checked``: it fails when ``cfg.unchecked`` is ``reject`` and is
    recorded as such (never as a pass on evidence) when it is ``record``.
    """
    worst = None
    slices, unchecked = [], []
    for value, idx in rows.groupby(col, dropna=False).indices.items():
        if len(idx) < cfg.min_size:
            unchecked.append({"value": str(value), "rows": len(idx), "reason": f"under {cfg.min_size} rows"})
            continue
        a, p = metric.fn(y[idx], challenger[idx]), metric.fn(y[idx], champion[idx])
        if a != a or p != p:
            unchecked.append({"value": str(value), "rows": len(idx), "reason": f"{metric.name} undefined (one class)"})
            continue
        gain = metric.gain(a, p)
        slices.append({"value": str(value), "rows": len(idx), "challenger": a, "champion": p, "gain": gain})
        worst = gain if worst is None else min(worst, gain)
    not_checked = worst is None
    return {
        "name": f"slices:{col}",
        "passed": (cfg.unchecked == "record") if not_checked else worst >= -cfg.tolerance,
        "not_checked": not_checked,
        "worst_gain": worst,
        "tolerance": cfg.tolerance,
        "min_size": cfg.min_size,
        "checked": len(slices),
        "unchecked_values": len(unchecked),
        "slices": slices,
        "unchecked": unchecked,
    }


def _holdout_scores(model_uri: str, rows: Any, task: str) -> tuple[Any, list[str]]:
    """A registered model's scores on the holdout rows, and the input columns it needs that the rows lack.

    The model is loaded as the scikit-learn pipeline batch scoring serves
    (its first step selects and types its own columns), so it is judged as it
    will score: a champion trained on other features is scored on its own,
    and no pyfunc schema check turns an integer column with a null into a
    traceback. When the rows lack a column of its signature, nothing is
    scored and the missing columns are returned.
    """
    import mlflow.sklearn
    from mlflow.models import get_model_info

    from pipelines.core.model import predict_scores

    signature = get_model_info(model_uri).signature
    names = signature.inputs.input_names() if signature is not None else list(rows.columns)
    missing = [c for c in names if c not in rows.columns]
    if missing:
        return None, missing
    model = mlflow.sklearn.load_model(model_uri)
    return predict_scores(model, rows[names], task), []


def _inputs_criterion(who: str, version: str, missing: list[str]) -> dict[str, Any]:
    return {
        "name": f"{who}_inputs",
        "passed": False,
        "missing_columns": missing,
        "detail": f"{who} v{version} needs columns the holdout lacks ({', '.join(missing)}): the two cannot be "
        "compared on it (did the contract drop a column?)",
    }


def evaluate_gate(project: ProjectConfig, candidate: str | None = None, *, force: bool = False) -> dict[str, Any]:
    """Score challenger and champion on a common holdout and check every criterion (no registry change)."""
    from pipelines.core.champions import history
    from pipelines.core.tracking import client
    from pipelines.training.dataset import labelled

    c = client()
    versions = c.search_model_versions(f"name='{project.name}'")
    if not versions:
        raise MissingInput(f"{project.name}: no registered version to gate; run `pipelines train` first")
    candidate = _version_number(candidate, versions, project.name)
    champion = _alias_version(c, project.name, CHAMPION)
    decision: dict[str, Any] = {
        "model": project.name,
        "candidate": candidate,
        "champion": champion,
        "primary_metric": project.metrics.primary,
        "evaluated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "forced": force,
        "criteria": [],
        "notes": [],
    }
    if champion == candidate:
        decision.update(passed=False, noop=True, failed=[])
        decision["notes"].append(f"version {candidate} is already the champion: nothing to do")
        return decision
    refused = _rolled_back_criterion(c, project.name, candidate, history(c, project.name), force)
    if refused is not None:
        decision["criteria"].append(refused)
        if not refused["passed"]:
            decision.update(passed=False, failed=[refused["name"]])
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
    size = _size_criterion(project, y.to_numpy())
    if not size["passed"]:
        decision["criteria"].append(size)
        decision.update(passed=False, failed=[size["name"]])
        return decision
    task = project.target.task
    ch_score, ch_missing = _holdout_scores(f"models:/{project.name}/{candidate}", rows, task)
    cp_score, cp_missing = (None, [])
    if champion is not None:
        cp_score, cp_missing = _holdout_scores(f"models:/{project.name}/{champion}", rows, task)
    unscorable = [_inputs_criterion("challenger", candidate, ch_missing)] if ch_missing else []
    unscorable += [_inputs_criterion("champion", str(champion), cp_missing)] if cp_missing else []
    if unscorable:
        decision["criteria"] += [size, *unscorable]
        decision.update(passed=False, failed=[x["name"] for x in unscorable])
        return decision
    verdict = judge(project, with_slice_features(project, rows), y.to_numpy(), ch_score, cp_score)
    decision["notes"] += verdict.pop("notes")
    verdict["criteria"] = [*decision["criteria"], size, *verdict["criteria"]]
    verdict["failed"] = [x["name"] for x in verdict["criteria"] if not x["passed"]]
    verdict["passed"] = not verdict["failed"]
    decision.update(verdict)
    return decision


def with_slice_features(project: ProjectConfig, rows: pd.DataFrame) -> pd.DataFrame:
    """The holdout rows with the derived features the gate slices on (``make_features``: the same values as the
    model's inputs on every validated row, as slices of both champion and challenger).

    Raises:
        ConfigError: a slice column is neither a column of the rows nor a feature of the project.
    """
    wanted = [c for c in project.gate.slices.columns if c not in rows.columns]
    if not wanted:
        return rows
    from pipelines.core.features import feature_spec, make_features

    spec = feature_spec(project)
    unknown = [c for c in wanted if c not in spec.output_columns]
    if unknown:
        raise ConfigError(f"{project.source}: gate.slices.columns: {unknown} are neither input columns nor features")
    features = make_features(rows, spec)
    return rows.assign(**{c: features[c] for c in wanted})


def _version_number(candidate: str | None, versions: list[Any], model: str) -> str:
    """The candidate as the registry numbers it (``"01"`` is ``"1"``); the newest without one.

    Raises:
        ConfigError: not a version number.
        MissingInput: no such version.
    """
    from pipelines.core.errors import ConfigError

    known = {str(v.version) for v in versions}
    if candidate is None or candidate == "":
        return str(max(int(v) for v in known))
    try:
        number = str(int(str(candidate).strip()))
    except ValueError:
        raise ConfigError(f"{model}: candidate {candidate!r} is not a version number") from None
    if number not in known:
        raise MissingInput(f"{model}: no version {number} (registered: {', '.join(sorted(known, key=int))})")
    return number


def _rolled_back_criterion(
    c: Any, model: str, candidate: str, entries: list[dict[str, Any]], force: bool
) -> dict[str, Any] | None:
    """Refuse a version rolled back as bad, or its twin (same data, code and config); ``None`` when neither."""
    from mlflow.exceptions import MlflowException

    from pipelines.core.champions import rolled_back

    bad = rolled_back(entries)
    if not bad:
        return None
    reason = None
    if candidate in bad:
        reason = f"v{candidate} was rolled back: {bad[candidate]}"
    else:
        same = ("data_fingerprint", "code_version", "config_hash")
        mine = c.get_model_version(model, candidate).tags or {}
        for version, why in sorted(bad.items()):
            try:
                theirs = c.get_model_version(model, version).tags or {}
            except MlflowException as exc:  # a rolled-back version deleted since: nothing to compare
                if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                    continue
                raise
            if all(mine.get(k) and mine.get(k) == theirs.get(k) for k in same):
                reason = f"same training data, code and config as v{version}, which was rolled back: {why}"
                break
    if reason is None:
        return None
    return {
        "name": "not_rolled_back",
        "passed": force,
        "detail": reason + ("; forced" if force else "; pass --force to gate it anyway"),
    }


def _size_criterion(project: ProjectConfig, y: np.ndarray) -> dict[str, Any]:
    """Enough labelled rows, and of each class, for any metric on the common holdout to mean something."""
    import numpy as np

    cfg = project.gate
    out: dict[str, Any] = {"name": "holdout_size", "rows": len(y), "min_rows": cfg.min_holdout_rows}
    problems = []
    if len(y) < cfg.min_holdout_rows:
        problems.append(f"{len(y)} labelled rows, fewer than {cfg.min_holdout_rows}")
    if project.target.task == "classification":
        counts = {str(int(k)): int(v) for k, v in zip(*np.unique(y, return_counts=True), strict=True)}
        counts = {"0": counts.get("0", 0), "1": counts.get("1", 0)}
        out.update(class_rows=counts, min_class_rows=cfg.min_class_rows)
        small = {k: v for k, v in counts.items() if v < cfg.min_class_rows}
        if small:
            problems.append(
                "; ".join(f"class {k} has {v} rows, fewer than {cfg.min_class_rows}" for k, v in small.items())
            )
    out["passed"] = not problems
    if problems:
        out["detail"] = "; ".join(problems) + ": too small to judge, the champion stays"
    return out


def _common_holdout(project: ProjectConfig, c: Any, candidate: str, champion: str | None, notes: list[str]) -> Any:
    """The challenger's holdout minus every day the champion trained on."""
    from pipelines.core.tracking import window

    holdout = _holdout(project, c, candidate)
    if champion is None:
        return holdout
    seen = window(c.get_model_version(project.name, champion).tags, "training_window")
    if not seen:
        notes.append(
            f"champion v{champion} records no training window: no holdout day dropped (it may be scored on days "
            "it trained on, which can only favour it)"
        )
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
    """Every metric criterion on the common holdout's labels and both models' scores (pure).

    Without a champion only the floors apply, and there must be one. Returns
    ``criteria``, ``challenger_metrics`` (and ``champion_metrics``),
    ``passed``, ``failed`` and ``notes``.
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
        days = rows["ds"].to_numpy() if "ds" in rows.columns else None
        if b.unit == "day" and days is None:
            raise MissingInput("a day-level bootstrap needs the holdout's ds column")
        ci = _bootstrap(primary, y, challenger, champion, b, days)
        criteria.append(
            {
                "name": f"bootstrap:{primary.name}",
                "passed": ci["low"] is not None and ci["low"] > -b.tolerance,
                **ci,
                "confidence": b.confidence,
                "tolerance": b.tolerance,
                "seed": b.seed,
            }
        )
        criteria += [
            slice_criterion(rows, col, y, challenger, champion, primary, cfg.slices) for col in cfg.slices.columns
        ]
        out["notes"] += [
            f"slices:{c_['name'].split(':', 1)[1]}: NOT CHECKED (no value with {cfg.slices.min_size} rows and both "
            f"classes); {'rejected' if not c_['passed'] else 'recorded, not a pass on evidence'}"
            for c_ in criteria
            if c_.get("not_checked")
        ]
    else:
        out["notes"].append("no champion yet: only the floors apply")
        if not cfg.floors:
            criteria.append(
                {
                    "name": "floors",
                    "passed": False,
                    "detail": "no floor configured (gate.floors): a first champion needs an absolute bound",
                }
            )
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
    if cp[name]:
        rel = gain / abs(cp[name])
    else:  # a champion at exactly 0: any gain is infinitely relative, in its own direction
        rel = float("inf") if gain > 0 else (0.0 if gain == 0 else float("-inf"))
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
    """A criterion's figures as compact JSON (the per-slice tables are left to the decision file)."""
    nums = {
        k: (round(v, 5) if isinstance(v, float) else v)
        for k, v in criterion.items()
        if k not in ("name", "passed", "slices", "unchecked")
    }
    return json.dumps(nums)


def _verdict(c: dict[str, Any]) -> str:
    if c.get("not_checked"):
        return "not checked" if c["passed"] else "**FAIL** (not checked)"
    return "pass" if c["passed"] else "**FAIL**"


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
        lines.append(f"| {c['name']} | {_verdict(c)} | `{_numbers(c)}` |")
    return "\n".join(lines) + "\n"


def _record(c: Any, project: ProjectConfig, d: dict[str, Any]) -> None:
    """The decision on the challenger's run, and its verdict on the version (``passed``, not yet ``promoted``)."""
    import mlflow

    from pipelines.core import catalog

    run_id = c.get_model_version(project.name, d["candidate"]).run_id
    with mlflow.start_run(run_id=run_id):
        mlflow.log_dict(d, catalog.GATE_DECISION)
        mlflow.log_text(render_markdown(d), catalog.GATE_DECISION_MD)
    d["decision_uri"] = f"runs:/{run_id}/{catalog.GATE_DECISION}"
    tags = {
        "gate_decision": "passed" if d["passed"] else "rejected",
        "gate_failed": ",".join(d["failed"]) or "-",
        "gate_champion_at_evaluation": d.get("champion") or "-",
        "gate_at": d["evaluated_at"],
        "gate_decision_uri": d["decision_uri"],
    }
    for k, v in tags.items():
        c.set_model_version_tag(project.name, d["candidate"], k, v)


def _move_aliases(
    c: Any,
    project: ProjectConfig,
    new: str,
    expected: str | None,
    why: str,
    decision_uri: str | None = None,
    *,
    force: bool = False,
    **extra: Any,
) -> dict[str, Any]:
    """Make ``new`` the champion (``previous-champion`` the old one) if the champion is still ``expected``.

    ``extra`` goes into the history entry (the live gate records the day it judged). A shadow promoted by
    any gate stops being a shadow (:func:`pipelines.core.shadows.end`), so it is never scored in shadow
    again once replaced.

    Under the promotion lock: the champion is re-checked, and so is ``new``
    against the rollbacks recorded meanwhile (unless ``force``); then the
    ``champion`` alias moves (the commit point), ``previous-champion``
    follows, then the history entry and the version's ``promoted`` tags.

    Raises:
        ChampionChanged: the champion is not ``expected`` any more (another promotion or a rollback won),
            or ``new`` was rolled back while the gate evaluated it.
    """
    from pipelines.core import champions

    with promotion_lock(project.name) as lock:
        current = _alias_version(c, project.name, CHAMPION)
        if current != expected:
            raise ChampionChanged(
                f"{project.name}: champion moved from {expected} to {current} during the gate; re-run the gate"
            )
        refused = _rolled_back_criterion(c, project.name, new, champions.history(c, project.name), force)
        if refused is not None and not refused["passed"]:
            raise ChampionChanged(f"{project.name}: during the gate, {refused['detail']}")
        lock.check()
        c.set_registered_model_alias(project.name, CHAMPION, new)
        if current is not None:
            c.set_registered_model_alias(project.name, PREVIOUS, current)
        entry = champions.append(c, project.name, "promote", new, current, why, decision_uri=decision_uri, **extra)
        c.set_model_version_tag(project.name, new, "gate_decision", "promoted")
        c.set_model_version_tag(project.name, new, "promoted_from", current or "-")
        c.set_model_version_tag(project.name, new, "promotion_reason", why[:4000])
        c.set_model_version_tag(project.name, new, "promoted_at", entry["at"])
        from pipelines.core import shadows

        shadows.end_if_shadow(project, new, "promoted", why, c)
        return entry


#: Criteria a challenger may fail and still be judged on live data (under ``gate.promotion: live``, or as a
#: near miss): the comparisons with the champion, not the sanity checks (holdout size, floors, inputs).
COMPARISONS = ("min_change:", "bootstrap:", "slices:")


def shadow_route(project: ProjectConfig, d: dict[str, Any], trigger: str | None) -> str | None:
    """Why the challenger of decision ``d`` starts as a shadow instead of being promoted or only rejected
    (pure), or ``None``:

    - ``gate.promotion: live``: every sanity check passed (the comparisons are left to live data);
    - ``gate.promotion: both``, or a drift-triggered challenger with ``shadow.drift_challenger: shadow``:
      the holdout gate passed;

    Never without a champion (a first champion is promoted on its floors) nor when the project keeps no
    shadows.
    """
    if d.get("champion") is None or d.get("noop") or project.shadow.max_versions < 1:
        return None
    mode = project.gate.promotion
    failed = d.get("failed") or []
    if mode == "live":
        sane = all(f.startswith(COMPARISONS) for f in failed)
        return (
            "gate.promotion live: the holdout's sanity checks passed, promotion is left to live data" if sane else None
        )
    if d.get("passed"):
        if mode == "both":
            return "gate.promotion both: the holdout gate passed, promotion waits for live evidence"
        if trigger == "drift" and project.shadow.drift_challenger == "shadow":
            return (
                "drift challenger (shadow.drift_challenger: shadow): the holdout gate passed, promotion waits "
                "for live evidence"
            )
        return None
    return None


def run_gate(
    project: ProjectConfig,
    candidate: str | None = None,
    *,
    dry_run: bool = False,
    force: bool = False,
    trigger: str | None = None,
) -> dict[str, Any]:
    """Evaluate, record, and promote when every criterion passes, or start the challenger as a shadow.

    A dry run evaluates only: nothing is recorded in MLflow and no alias moves.
    ``force`` gates a version that was rolled back (or its twin) like any other.
    ``trigger`` is what made the challenger (``drift``, ``schedule``, ``manual``): with
    :func:`shadow_route`, it decides whether a challenger starts as a shadow (``d["shadow"]`` names why;
    the alias does not move, the version is tagged ``gate_decision=shadow``, and the live gate decides).

    Raises:
        GateRejected: a criterion failed; the champion is untouched (exit 4).
        ChampionChanged: another promotion or a rollback won the race (exit 4).
    """
    from pipelines.core.tracking import client

    d = evaluate_gate(project, candidate, force=force)
    d["promoted"] = False
    d["dry_run"] = dry_run
    c = client()
    if d.get("noop"):
        if not dry_run:  # a retried gate whose promotion lost its record: record it now, and say so
            with promotion_lock(project.name) as lock:
                recovered = lock.reconciled
            if recovered and recovered.get("event") == "recovered" and recovered["champion"] == d["candidate"]:
                d.update(promoted=bool(recovered.get("gated")), recovered=True)
            from pipelines.training.card import refresh_alias_cards

            refresh_alias_cards(project, [d["candidate"]], c)  # the try that moved the alias may have died first
        return d
    d["shadow"] = shadow_route(project, d, trigger)
    previous = None if dry_run else _alias_version(c, project.name, PREVIOUS)  # loses its alias on a promotion
    try:
        return _decide(c, project, d, dry_run=dry_run, force=force)
    finally:
        if not dry_run and d.get("decision_uri"):  # the versions' statuses changed: their cards follow
            from pipelines.training.card import refresh_cards

            changed = [d["candidate"], d.get("champion"), previous, *d.get("shadows_retired", [])]
            refresh_cards(project, changed, c)


def _decide(c: Any, project: ProjectConfig, d: dict[str, Any], *, dry_run: bool, force: bool) -> dict[str, Any]:
    """Record the evaluated decision ``d`` and act on it (:func:`run_gate`'s second half)."""
    if not dry_run:
        _record(c, project, d)
    if d["shadow"] and not dry_run:
        from pipelines.core import shadows

        d["shadows_retired"] = shadows.start(project, d["candidate"], d["shadow"], c)["retired"]
        c.set_model_version_tag(project.name, d["candidate"], "gate_decision", "shadow")
    if d["shadow"]:
        log.info("%s gate v%s: starts as a shadow: %s", project.name, d["candidate"], d["shadow"])
        if d["passed"] or project.gate.promotion == "live":
            return d  # not a rejection: the live gate decides
    elif d["passed"] and not dry_run:
        why = f"gate passed: {', '.join(x['name'] for x in d['criteria'])} ({d['decision_uri']})"
        try:
            _move_aliases(c, project, d["candidate"], d["champion"], why, d["decision_uri"], force=force)
        except ChampionChanged:
            c.set_model_version_tag(project.name, d["candidate"], "gate_decision", "superseded")
            raise
        d["promoted"] = True
    for crit in d["criteria"]:  # the task log shows what the decision file holds
        log.info("%s gate v%s: %s %s %s", project.name, d["candidate"], crit["name"], _verdict(crit), _numbers(crit))
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
    """Make ``previous-champion`` the champion again; the rolled-back version becomes ``previous-champion``.

    The rollback is recorded in the alias history first (the intent), then
    the aliases move: an interrupted rollback is completed by the next locked
    section. The rolled-back version is refused by the gate (with its twins)
    unless forced, never reused by training and skipped by as-of pinning,
    until it is made champion again.

    Raises:
        MissingInput: no ``previous-champion``, or it is the champion itself.
    """
    from pipelines.core import champions
    from pipelines.core.tracking import client

    c = client()
    with promotion_lock(project.name) as lock:
        current = _alias_version(c, project.name, CHAMPION)
        previous = _alias_version(c, project.name, PREVIOUS)
        if previous is None or previous == current:
            raise MissingInput(f"{project.name}: no previous-champion to roll back to (champion v{current})")
        lock.check()
        entry = champions.append(c, project.name, "rollback", previous, current, f"rollback: {reason}")
        if current is not None:
            c.set_model_version_tag(project.name, current, "rolled_back", reason[:4000])
        c.set_registered_model_alias(project.name, CHAMPION, previous)
        if current is not None:
            c.set_registered_model_alias(project.name, PREVIOUS, current)
    log.info("%s: rolled back champion %s -> %s (%s)", project.name, current, previous, reason)
    from pipelines.training.card import refresh_cards

    refresh_cards(project, [previous, current], c)
    return {k: entry[k] for k in ("champion", "previous", "why", "at")}
