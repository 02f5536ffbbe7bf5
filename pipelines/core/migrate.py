"""Moving a data root written before the catalog to the catalog's layout: ``pipelines migrate-layout``.

Run it once, with the scheduler and workers stopped, before the new version
runs against an existing data root: readers only look at the new keys, so an
unmoved validation report would keep its day from being scored, an unmoved
drift report would be missing from the policy's history and cooldown, and an
unmoved scoring checkpoint would not be resumed.

Each artifact is copied to its new key (an atomic write) and only then
deleted from its old one, so an interruption loses nothing; run it again to
finish (a copy already made is recognised by its bytes). An artifact whose
new key holds something else (written by the new version) is left where it
was and reported, never overwritten; so is one rewritten during the move.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from pipelines.core import catalog

if TYPE_CHECKING:
    from pipelines.core.storage import Storage

log = logging.getLogger(__name__)


def migrate_layout(storage: Storage | None = None, *, dry_run: bool = False) -> dict[str, Any]:
    """Move every artifact at a pre-catalog key to its catalog key; returns what moved and what was kept."""
    from pipelines.core.storage import get_storage

    storage = storage or get_storage()
    moved, kept = [], []
    for old, new in catalog.legacy_moves(storage):
        copied = storage.exists(new)
        if copied and storage.read_bytes(new) != storage.read_bytes(old):
            kept.append({"from": old, "to": new, "why": "the new key holds something else; both are left"})
            continue
        if not dry_run and not _move(storage, old, new, copied=copied):
            kept.append({"from": old, "to": new, "why": "changed while moving; stop the scheduler and run again"})
            continue
        moved.append({"from": old, "to": new})
        log.info("%s %s -> %s", "would move" if dry_run else "moved", old, new)
    for k in kept:
        log.warning("kept %s: %s", k["from"], k["why"])
    return {"root": storage.root, "dry_run": dry_run, "moved": moved, "kept": kept}


def _move(storage: Storage, old: str, new: str, *, copied: bool) -> bool:
    """Copy (unless an interrupted move already did), then delete; ``False`` when ``old`` was rewritten meanwhile."""
    data = storage.read_bytes(old)
    if not copied:
        storage.write_bytes(new, data)
    if storage.read_bytes(old) != data:  # the scheduler was not stopped
        return False
    storage.delete(old)
    return True
