"""The champion's history: every move of the ``champion`` alias, recorded where it happens.

MLflow keeps an alias's current target only. Each move (a promotion by the
gate, a rollback, or a move found without a record) is appended to the
registered model as a tag ``alias_history.<seq>`` holding one JSON entry,
inside the model's promotion lock (:func:`pipelines.training.gate.promotion_lock`):

- a **promotion**'s commit point is the alias move; its entry follows at
  once. A move whose entry was lost (the process died in between) is
  recorded by the next locked section (:func:`reconcile`) as ``recovered``;
  a move nobody gated (an alias set by hand in the MLflow UI) is recorded as
  ``recovered`` with ``"gated": false`` and never counts as a champion for
  as-of pinning;
- a **rollback** is recorded first, as the intent, then the aliases move: a
  rollback interrupted in between is completed by :func:`reconcile`, so a
  version rolled back as bad can never silently stay or come back.

Readers derive from the history, never from a version's tags:

- :func:`ever_champion`: the versions that were champion through the gate;
- :func:`rolled_back`: the versions rolled back as bad and not champion
  again since (the gate refuses them, training does not reuse them, as-of
  pinning skips them).

Entries: ``{"seq", "event": "promote" | "rollback" | "recovered", "champion",
"previous", "why", "at", ...}``. A registry from before the history has none:
until the first entry is stored, it is read from the version tags the gate
wrote after an alias move then (``promoted_from``, ``rolled_back``), and the
first append stores that legacy record before its own entry.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from typing import Any

from pipelines.core.tracking import CHAMPION, PREVIOUS, alias_version

log = logging.getLogger(__name__)

HISTORY_TAG = "alias_history."
#: Set once the history holds every entry (the legacy record included): until then it is read from tags.
COMPLETE_TAG = "alias_history_complete"
EVENTS = ("promote", "rollback", "recovered")
_SEQ_RE = re.compile(r"alias_history\.(\d{6,})")
#: Registered-model tag values are 5,000 characters in some stores (PostgreSQL): keep every entry under it.
MAX_ENTRY_CHARS = 4000


def _registered_tags(c: Any, model: str) -> dict[str, str]:
    from mlflow.exceptions import MlflowException

    try:
        return c.get_registered_model(model).tags or {}
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return {}
        raise


def _persisted(tags: dict[str, str]) -> list[dict[str, Any]]:
    """The stored entries, oldest first; the sequence comes from the tag's key, a bad entry is skipped loudly."""
    entries = []
    for key, value in tags.items():
        m = _SEQ_RE.fullmatch(key)
        if not m:
            continue
        try:
            entry = json.loads(value)
        except ValueError:
            entry = None
        if not (isinstance(entry, dict) and entry.get("event") in EVENTS):
            log.error("alias history tag %s is not an entry (%r): ignored", key, value[:200])
            continue
        for field in ("champion", "previous"):
            if entry.get(field) is not None:
                entry[field] = str(entry[field])
        entries.append({**entry, "seq": int(m.group(1))})
    return sorted(entries, key=lambda e: e["seq"])


def history(c: Any, model: str) -> list[dict[str, Any]]:
    """The model's alias history, oldest first (empty when the model or its history does not exist)."""
    tags = _registered_tags(c, model)
    if tags.get(COMPLETE_TAG):
        return _persisted(tags)
    return _legacy(c, model)


def _legacy(c: Any, model: str) -> list[dict[str, Any]]:
    """The record of a registry from before the history, from the tags written after an alias move.

    ``gate_decision=promoted`` alone is not trusted (it was also written by dry
    runs and lost races); ``promoted_from`` was written only after the move.
    """
    versions = sorted(c.search_model_versions(f"name='{model}'"), key=lambda v: int(v.version))
    entries: list[dict[str, Any]] = []
    for v in versions:
        tags = v.tags or {}
        if tags.get("gate_decision") == "promoted" and "promoted_from" in tags:
            previous = tags["promoted_from"] if tags["promoted_from"] != "-" else None
            entries.append({"event": "promote", "champion": str(v.version), "previous": previous, "legacy": True})
    for v in versions:
        if "rolled_back" in (v.tags or {}):
            why = f"rollback: {v.tags['rolled_back']}"
            entries.append(
                {"event": "rollback", "champion": None, "previous": str(v.version), "why": why, "legacy": True}
            )
    for i, e in enumerate(entries, 1):
        e["seq"] = i
    return entries


def ever_champion(entries: list[dict[str, Any]]) -> set[str]:
    """Versions that were champion through the gate (or a rollback to one) at some point (pure)."""
    return {str(e["champion"]) for e in entries if e.get("champion") and e.get("gated", True)}


def rolled_back(entries: list[dict[str, Any]]) -> dict[str, str]:
    """``{version: why}`` of versions rolled back and not champion again since (pure)."""
    out: dict[str, str] = {}
    for e in entries:
        if e.get("champion"):
            out.pop(str(e["champion"]), None)
        if e.get("event") == "rollback" and e.get("previous"):
            out[str(e["previous"])] = str(e.get("why") or "rolled back")
    return out


def last_seq(entries: list[dict[str, Any]]) -> int:
    return max((int(e["seq"]) for e in entries), default=0)


def _store(c: Any, model: str, entry: dict[str, Any]) -> None:
    c.set_registered_model_tag(model, f"{HISTORY_TAG}{int(entry['seq']):06d}", _bounded(entry))


def _bounded(entry: dict[str, Any]) -> str:
    """The entry as JSON within :data:`MAX_ENTRY_CHARS` (its ``why`` cut as needed)."""
    text = json.dumps(entry, sort_keys=True)
    why = str(entry.get("why") or "")
    while len(text) > MAX_ENTRY_CHARS and why:
        why = why[: max(len(why) - (len(text) - MAX_ENTRY_CHARS) - 16, 0)]
        text = json.dumps({**entry, "why": why + " [cut]"}, sort_keys=True)
    return text


def _complete(c: Any, model: str) -> list[dict[str, Any]]:
    """Make the stored history complete (the legacy record stored first, once); returns it."""
    tags = _registered_tags(c, model)
    if tags.get(COMPLETE_TAG):
        return _persisted(tags)
    entries = _legacy(c, model)
    for e in entries:  # the same keys again after an interrupted start: rewriting them is idempotent
        _store(c, model, e)
    c.set_registered_model_tag(model, COMPLETE_TAG, "1")
    return entries


def append(c: Any, model: str, event: str, champion: str, previous: str | None, why: str, **extra: Any) -> dict:
    """Append one entry (call only inside the promotion lock)."""
    if event not in EVENTS:
        raise ValueError(f"unknown alias event {event!r}")
    stored = _complete(c, model)
    taken = [int(m.group(1)) for k in _registered_tags(c, model) if (m := _SEQ_RE.fullmatch(k))]
    entry = {
        "seq": max([last_seq(stored), *taken]) + 1,  # never over an entry, even one that does not parse
        "event": event,
        "champion": champion,
        "previous": previous,
        "why": why,
        "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        **extra,
    }
    _store(c, model, entry)
    c.set_registered_model_tag(model, "last_alias_change", _bounded(entry))
    return entry


def reconcile(c: Any, model: str) -> dict[str, Any] | None:
    """Bring the aliases and the history into agreement (inside the lock only, before any move).

    - the last entry is a rollback the aliases do not show: complete it (move the aliases);
    - the champion is not the last recorded one: record the move (``recovered``; ``gated`` only if the
      gate passed that version), and point ``previous-champion`` at the last recorded champion.

    Returns the entry written, the rollback completed, or ``None`` when they already agree.
    """
    mv = alias_version(c, model, CHAMPION)
    entries = history(c, model)
    recorded = [e for e in entries if e.get("champion")]
    last = recorded[-1] if recorded else None
    current = None if mv is None else str(mv.version)
    if last and last["event"] == "rollback" and not last.get("legacy") and current != last["champion"]:
        c.set_registered_model_alias(model, CHAMPION, last["champion"])
        if last.get("previous"):
            c.set_registered_model_alias(model, PREVIOUS, last["previous"])
            c.set_model_version_tag(model, last["previous"], "rolled_back", last.get("why") or "rollback")
        log.warning("%s: completed an interrupted rollback to v%s", model, last["champion"])
        return last
    if current is None or (last is not None and last["champion"] == current and not last.get("legacy")):
        return None
    if last is not None and last["champion"] == current:
        why = "history started: the champion carried over from the version tags"
    else:
        why = "the champion alias moved without a history entry (a promotion interrupted, or set by hand)"
    gated = (mv.tags or {}).get("gate_decision") in ("passed", "promoted") or current in ever_champion(entries)
    previous = last["champion"] if last else None
    if previous and previous != current:
        c.set_registered_model_alias(model, PREVIOUS, previous)
    entry = append(c, model, "recovered", current, previous, why, gated=gated)
    if gated:
        c.set_model_version_tag(model, current, "gate_decision", "promoted")
    log.warning("%s: recorded champion v%s found without a history entry (gated: %s)", model, current, gated)
    return entry
