"""The champion's history: every move of the ``champion`` alias, recorded where it happens.

MLflow keeps an alias's current target only. Each move (a promotion by the
gate, a rollback, or a move found without a record and recovered) is appended
to the registered model as a tag ``alias_history.<seq>`` holding one JSON
entry, in the same locked section that moves the alias
(:func:`pipelines.training.gate.promotion_lock`): the alias move is the
commit point, the entry follows it at once, and a move that lost its entry
(the process died in between) is recovered by the next locked section
(:func:`reconcile`).

Readers derive from the history, never from a version's tags:

- :func:`ever_champion`: the versions that were champion at some point;
- :func:`rolled_back`: the versions rolled back as bad and not restored since
  (the gate refuses them, training does not reuse them, as-of pinning skips them).

Entries: ``{"seq", "event": "promote" | "rollback" | "recovered", "champion",
"previous", "why", "at", "decision_uri"}``.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from pipelines.core.tracking import CHAMPION, alias_version

HISTORY_TAG = "alias_history."
EVENTS = ("promote", "rollback", "recovered")


def _persisted(c: Any, model: str) -> list[dict[str, Any]]:
    """The entries stored on the registered model, oldest first."""
    from mlflow.exceptions import MlflowException

    try:
        tags = c.get_registered_model(model).tags or {}
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return []
        raise
    entries = []
    for key, value in tags.items():
        if key.startswith(HISTORY_TAG):
            try:
                entry = json.loads(value)
            except ValueError:
                continue
            if isinstance(entry, dict) and entry.get("event") in EVENTS:
                entries.append(entry)
    return sorted(entries, key=lambda e: int(e.get("seq", 0)))


def history(c: Any, model: str) -> list[dict[str, Any]]:
    """The model's alias history, oldest first (empty when the model or its history does not exist).

    A registry from before the history existed has none: its promoted versions
    are read from their ``gate_decision``/``rolled_back`` tags instead, as
    entries marked ``"legacy": true`` (the first append stores them).
    """
    return _persisted(c, model) or _legacy(c, model)


def _legacy(c: Any, model: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    for v in sorted(c.search_model_versions(f"name='{model}'"), key=lambda v: int(v.version)):
        tags = v.tags or {}
        if tags.get("gate_decision") == "promoted":
            entries.append({"event": "promote", "champion": str(v.version), "previous": None, "legacy": True})
    for v in c.search_model_versions(f"name='{model}'"):
        if "rolled_back" in (v.tags or {}):
            entries.append({"event": "rollback", "champion": None, "previous": str(v.version), "legacy": True})
    for i, e in enumerate(entries, 1):
        e["seq"] = i
    return entries


def ever_champion(entries: list[dict[str, Any]]) -> set[str]:
    """Versions that were champion at some point (pure)."""
    return {str(e["champion"]) for e in entries if e.get("champion")}


def rolled_back(entries: list[dict[str, Any]]) -> dict[str, str]:
    """``{version: why}`` of versions rolled back and not champion again since (pure)."""
    out: dict[str, str] = {}
    for e in entries:
        if e.get("champion"):
            out.pop(str(e["champion"]), None)
        if e.get("event") == "rollback" and e.get("previous"):
            out[str(e["previous"])] = str(e.get("why") or "rolled back")
    return out


def _store(c: Any, model: str, entry: dict[str, Any]) -> None:
    c.set_registered_model_tag(model, f"{HISTORY_TAG}{int(entry['seq']):06d}", json.dumps(entry, sort_keys=True))


def append(c: Any, model: str, event: str, champion: str, previous: str | None, why: str, **extra: Any) -> dict:
    """Append one entry (call only inside the promotion lock, right after the alias move).

    The first append on a registry from before the history stores the legacy
    entries first, so no earlier champion is forgotten.
    """
    if event not in EVENTS:
        raise ValueError(f"unknown alias event {event!r}")
    stored = _persisted(c, model)
    if not stored:
        stored = _legacy(c, model)
        for e in stored:
            _store(c, model, e)
    seq = max((int(e.get("seq", 0)) for e in stored), default=0) + 1
    entry = {
        "seq": seq,
        "event": event,
        "champion": champion,
        "previous": previous,
        "why": why[:2000],
        "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        **extra,
    }
    _store(c, model, entry)
    c.set_registered_model_tag(model, "last_alias_change", json.dumps(entry, sort_keys=True))
    return entry


def reconcile(c: Any, model: str) -> dict[str, Any] | None:
    """Record a champion the history does not end with (a move whose entry was lost); inside the lock only."""
    mv = alias_version(c, model, CHAMPION)
    if mv is None:
        return None
    entries = history(c, model)
    last = next((str(e["champion"]) for e in reversed(entries) if e.get("champion")), None)
    if last == str(mv.version) and not entries[-1].get("legacy"):
        return None
    if last == str(mv.version):
        why = "history started: the champion carried over from the version tags"
    else:
        why = "alias found moved without a history entry (a move interrupted before its record)"
    return append(c, model, "recovered", str(mv.version), last, why)
