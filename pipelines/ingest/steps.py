"""Entry points of the ingest DAG's tasks (one call per task)."""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


def landing_ready(model: str, ds: str) -> bool:
    """Whether a partition's delivery is complete: its data files and, when the dataset has one, its ready marker."""
    from pipelines.core.config import load_project
    from pipelines.core.errors import NothingLanded
    from pipelines.core.storage import get_storage
    from pipelines.ingest.validation import delivery

    project = load_project(model)
    try:
        landed = delivery(project, ds, get_storage())
    except NothingLanded as waiting:
        log.info("%s; waiting", waiting)
        return False
    log.info("%s ds=%s: %d landed file(s); ready", project.dataset.name, ds, len(landed))
    return True


def run_validation(model: str, ds: str) -> dict[str, Any]:
    """Validate a partition for a model project (see :func:`pipelines.ingest.validation.validate_partition`)."""
    from pipelines.core.config import load_project
    from pipelines.ingest.validation import validate_partition

    return validate_partition(load_project(model), ds)
