"""A model project's choices, read from the dataset's columns and the sample: target, features, sizes.

- **Target and task**: the named column must be numeric or boolean (the label
  is ``column >= positive_threshold``). Without ``--task``, a 0/1 or boolean
  column is a classification (threshold 1), anything else a regression; an
  explicit classification of another numeric column splits at the sample's
  median.
- **Features**: every contract column but the target, the natural key, the
  partition day's columns, identifiers (an ``id``-like name, near-unique
  text, a running integer sequence), dates and times, and columns constant in
  the sample; numbers and booleans are numeric, text is categorical. The
  partition day adds a ``weekday`` expression (a calendar feature, left out of
  drift monitoring); a timestamp partition column its UTC hour.
- **Sizes**: the training window is the sample's days, its holdout a third of
  them (5 to 7 days when there are ten or more, so the gate's day-level
  bootstrap has its 5 days); the gate's minimum holdout and class rows, the
  slice size and the drift window's minimum rows are halves of what the sample
  suggests the holdout and a drift window will hold, capped at the defaults.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass, field
from typing import Any

from pipelines.core.errors import ConfigError
from pipelines.core.expressions import quote_identifier
from pipelines.scaffold.profile import ColumnInfo, Frames, target_values

TASKS = ("classification", "regression")


@dataclass
class Expression:
    expr: str
    kind: str = "numeric"
    calendar: bool = False
    comment: str = ""


@dataclass
class ProjectDraft:
    """What the project config will say, before it is rendered."""

    name: str
    dataset: str
    target: str
    task: str
    threshold: float | None
    threshold_note: str
    numeric: list[str]
    categorical: list[str]
    expressions: dict[str, Expression]
    excluded: dict[str, str]
    start_date: str
    sizes: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def round_sig(value: float, digits: int = 2) -> float:
    """``value`` to ``digits`` significant digits (0 stays 0)."""
    if not value or not math.isfinite(value):
        return 0.0
    return round(value, digits - 1 - math.floor(math.log10(abs(value))))


def choose_target(
    target: str, task: str | None, infos: dict[str, ColumnInfo], key: list[str], frames: Frames
) -> tuple[str, float | None, str]:
    """``(task, positive_threshold, why)`` for a target column.

    Raises:
        ConfigError: not a contract column, part of the key, not numeric or boolean, an unknown task, or
            a classification threshold the sample cannot suggest.
    """
    if task is not None and task not in TASKS:
        raise ConfigError(f"--task: {task!r} is not one of {', '.join(TASKS)}")
    if target not in infos:
        raise ConfigError(f"--target: {target!r} is not a column of the contract (columns: {', '.join(infos)})")
    info = infos[target]
    if target in key:
        raise ConfigError(f"--target: {target!r} is part of the natural key {key}, not an outcome")
    if info.logical_type not in ("integer", "number", "boolean"):
        raise ConfigError(
            f"--target: {target!r} is a {info.logical_type} column; a target is a number or a boolean "
            "(classification labels rows with column >= positive_threshold)"
        )
    y = target_values(frames, target)
    binary = info.logical_type == "boolean" or (len(y) > 0 and set(y.unique()) <= {0.0, 1.0})
    if task is None:
        if not len(y) and info.logical_type != "boolean":
            raise ConfigError(f"--task: no sample values of {target!r} to tell the task from; give --task, or --sample")
        task = "classification" if binary else "regression"
    if task == "regression":
        return task, None, ""
    if binary:
        return task, 1.0, f"{target} is 0/1: 1 is the positive class"
    if not len(y):
        raise ConfigError(f"no sample values of {target!r} to choose a positive_threshold from; give --sample")
    threshold = float(y.median())
    if (y >= threshold).all():
        above = y[y > threshold]
        if above.empty:
            raise ConfigError(f"--target: {target!r} has one value in the sample; nothing to classify")
        threshold = float(above.min())
    return task, round_sig(threshold, 4), f"the sample's median of {target}: REVIEW what makes a positive"


def _excluded_reason(info: ColumnInfo, target: str, key: list[str], partition_cols: list[str]) -> str | None:
    if info.name == target:
        return "the target"
    if info.name in key:
        return "the natural key"
    if info.name in partition_cols:
        return "the partition day"
    if info.id_like:
        return "an identifier"
    if info.logical_type in ("date", "timestamp"):
        return "a date or time: derive features from it under expressions if it is known when scoring"
    if info.rows and info.distinct <= 1:
        return "constant in the sample"
    return None


def choose_features(
    infos: dict[str, ColumnInfo], target: str, key: list[str], partition: dict[str, str] | None
) -> tuple[list[str], list[str], dict[str, Expression], dict[str, str]]:
    """``(numeric, categorical, expressions, excluded)``: the model's inputs from the contract's columns."""
    partition_cols = [partition[k] for k in ("column", "year", "month", "day") if partition and k in partition]
    numeric, categorical, excluded = [], [], {}
    for info in infos.values():
        reason = _excluded_reason(info, target, key, partition_cols)
        if reason:
            excluded[info.name] = reason
        elif info.logical_type == "string":
            categorical.append(info.name)
        else:
            numeric.append(info.name)
    expressions = _calendar_expressions(partition or {}, infos)
    expressions = {n: e for n, e in expressions.items() if n not in infos}
    if not numeric and not categorical and not expressions:
        raise ConfigError(f"no column is left to be a feature (left out: {excluded})")
    return numeric, categorical, expressions, excluded


def _calendar_expressions(partition: dict[str, str], infos: dict[str, ColumnInfo]) -> dict[str, Expression]:
    """Features of the partition day: its weekday (calendar), and a timestamp column's hour.

    They read the partition-date rule's own columns, quoted (a column may be named ``order``, ``End``
    or ``ship date``), and a feature named after a column is named in the config's plain identifiers.
    """
    q = quote_identifier
    if "year" in partition:
        day = f"make_date({q(partition['year'])}, {q(partition['month'])}, {q(partition['day'])})"
        return {"weekday": Expression(f"isodow({day}) - 1", calendar=True, comment="Monday = 0")}
    column = partition.get("column")
    if not column or column not in infos:
        return {}
    out = {}
    if infos[column].logical_type == "date" or partition.get("timezone") == "UTC":
        out["weekday"] = Expression(f"isodow({q(column)}) - 1", calendar=True, comment="Monday = 0")
    if infos[column].logical_type == "timestamp":
        out[feature_name(column, "hour")] = Expression(f"hour({q(column)})", comment="in UTC")
    return out


def feature_name(column: str, suffix: str) -> str:
    """A plain feature name (lower-case letters, digits and _, a letter first) for ``column``'s ``suffix``."""
    stem = re.sub(r"[^a-z0-9]+", "_", column.lower()).strip("_")
    if not stem or not stem[0].isalpha():
        stem = f"c_{stem}".rstrip("_")
    return f"{stem[: 62 - len(suffix)]}_{suffix}"


def sizes(frames: Frames, task: str, y: Any, categorical: list[str], infos: dict[str, ColumnInfo]) -> dict[str, Any]:
    """Training window, gate and drift sizes from the sample's days and rows (defaults without a sample)."""
    days = len([ds for ds, _ in frames if ds]) or len(frames)
    per_day = sum(len(f) for _, f in frames) / len(frames) if frames else 0.0
    labelled = len(y) / max(sum(len(f) for _, f in frames), 1) if frames else 0.0
    if days >= 10:
        holdout = min(7, max(5, days // 3))
    elif days >= 3:
        holdout = max(1, days // 3)
    else:
        holdout = 0
    out: dict[str, Any] = {"days": days, "rows_per_day": round(per_day, 1)}
    window = days if holdout else 60
    holdout = holdout or 7
    est = per_day * labelled * holdout
    out.update(window_days=window, holdout_days=holdout, estimated_holdout_rows=int(est))
    out["min_days"] = min(5, holdout) if holdout >= 2 else None
    out["min_holdout_rows"] = min(200, max(20, int(0.5 * est))) if est else 200
    out["min_class_rows"] = 20
    if task == "classification" and len(y) and est:
        share = float(min((y >= 0.5).mean(), (y < 0.5).mean())) if set(y.unique()) <= {0.0, 1.0} else 0.5
        out["min_class_rows"] = min(20, max(5, int(0.5 * share * est)))
    small = [c for c in categorical if 2 <= infos[c].distinct <= 10]
    out["slice"] = min(small, key=lambda c: infos[c].distinct) if small else None
    if out["slice"]:
        out["slice_min_size"] = min(200, max(20, int(est / (2 * infos[out["slice"]].distinct)))) if est else 200
    out.update(_tolerances(task, y))
    drift_window = min(7, days) if days >= 3 else 7
    out["drift_window_days"] = drift_window
    out["drift_min_rows"] = min(2000, max(50, int(0.5 * per_day * drift_window))) if per_day else 200
    return out


def _tolerances(task: str, y: Any) -> dict[str, float]:
    """How much worse a slice (and the bootstrap's lower bound) may be, in the primary metric's units."""
    if task == "classification":
        return {"slice_tolerance": 0.05, "bootstrap_tolerance": 0.01}
    import numpy as np

    spread = float(np.mean(np.abs(y - np.median(y)))) if len(y) else 0.0
    if not spread:
        return {"slice_tolerance": 1.0, "bootstrap_tolerance": 0.1}
    return {"slice_tolerance": round_sig(0.1 * spread), "bootstrap_tolerance": round_sig(0.02 * spread)}


def start_date(first_day: str | None, frames: Frames) -> str:
    """The feed's first day: the sample's first day, else today."""
    days = sorted(ds for ds, _ in frames if ds)
    return first_day or (days[0] if days else dt.date.today().isoformat())
