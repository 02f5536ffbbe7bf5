"""Entry points of the ingest DAG's tasks (one call per task)."""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


def landing_ready(model: str, ds: str) -> bool:
    """Whether a partition's delivery is complete (its ready marker, or any file when none is configured)."""
    from pipelines.config import load_project
    from pipelines.storage import get_storage, partition_key
    from pipelines.validation import landed_keys

    project = load_project(model)
    storage = get_storage()
    landing = partition_key("landing", project.dataset.name, ds)
    files = landed_keys(storage, landing)
    marker = project.ingest.ready_marker
    marked = bool(marker) and storage.exists(f"{landing}/{marker}")
    ready = bool(files) and (not marker or marked)
    log.info(
        "%s ds=%s: %d landed file(s)%s; %s",
        project.dataset.name,
        ds,
        len(files),
        f", marker {marker} {'present' if marked else 'absent'}" if marker else "",
        "ready" if ready else "waiting",
    )
    return ready


def run_validation(model: str, ds: str) -> dict[str, Any]:
    """Validate a partition for a model project (see :func:`pipelines.validation.validate_partition`)."""
    from pipelines.config import load_project
    from pipelines.validation import validate_partition

    return validate_partition(load_project(model), ds)
