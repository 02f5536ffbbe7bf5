"""The retraining policy, pure: whether one partition signals, and whether the policy fires.

A partition *signals* when the drifted share reaches ``drift_share`` or a
metric decayed beyond ``performance_decay``; the policy *fires* when it and the
``consecutive - 1`` validated partitions before it signal (hysteresis), and no
retraining or earlier firing lies within ``cooldown_days`` partition days.
Every input is an argument and is recorded with the decision.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipelines.core.config import DriftConfig, ProjectConfig


def signal(project: ProjectConfig, rows: int, drift: dict[str, Any], perf: dict[str, Any]) -> dict[str, Any]:
    """Whether one partition signals, and why (pure)."""
    cfg = project.drift
    reasons = []
    if rows < cfg.min_rows:
        return {"signal": False, "reasons": [f"{rows} rows < min_rows {cfg.min_rows}"]}
    if drift["drift_share"] >= cfg.drift_share:
        reasons.append(
            f"drift_share {drift['drift_share']:.3f} >= {cfg.drift_share} ({', '.join(drift['drifted_features'])})"
        )
    for name in perf.get("decayed", []):
        m = perf["metrics"][name]
        reasons.append(
            f"{name} {m['value']:.4f} vs baseline {m['baseline']:.4f}: decay {m['decay']:.4f} > {m['allowed_decay']}"
        )
    return {"signal": bool(reasons), "reasons": reasons}


def decide(
    cfg: DriftConfig,
    ds: str,
    *,
    current: dict[str, Any],
    history: list[tuple[str, bool]],
    last_retraining: str | None,
    last_fired: str | None,
) -> dict[str, Any]:
    """The policy's decision for partition ``ds`` (pure: every input is an argument and is recorded).

    Args:
        current: this partition's signal (``signal``, ``reasons``).
        history: ``(ds, signal)`` of the validated partitions just before ``ds``, oldest first
            (at most ``consecutive - 1``).
        last_retraining: end of the newest training window at or before ``ds``.
        last_fired: the newest partition before ``ds`` on which the policy fired.
    """
    day = dt.date.fromisoformat(ds)
    inputs = {
        "consecutive_required": cfg.consecutive,
        "history": [{"ds": d, "signal": s} for d, s in history],
        "cooldown_days": cfg.cooldown_days,
        "last_retraining": last_retraining,
        "last_fired": last_fired,
    }
    if not current["signal"]:
        return {
            "fired": False,
            "reason": "no signal: " + ("; ".join(current["reasons"]) or "no drift, no decay"),
            **inputs,
        }
    streak = 1
    for _d, s in reversed(history):
        if not s:
            break
        streak += 1
    inputs["streak"] = streak
    if streak < cfg.consecutive:
        return {
            "fired": False,
            "reason": f"signal on {streak} partition(s) in a row, {cfg.consecutive} required",
            **inputs,
        }
    recent = [d for d in (last_retraining, last_fired) if d and d <= ds]
    if recent:
        last = max(recent)
        age = (day - dt.date.fromisoformat(last)).days
        inputs["days_since_last"] = age
        if age < cfg.cooldown_days:
            what = "firing" if last == last_fired else "retraining"
            return {
                "fired": False,
                "reason": f"cooldown: last {what} on {last}, {age} < {cfg.cooldown_days} day(s)",
                **inputs,
            }
    return {
        "fired": True,
        "reason": f"signal on {streak} partition(s) in a row: " + "; ".join(current["reasons"]),
        **inputs,
    }
