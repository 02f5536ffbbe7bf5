"""Entry points of the ingest DAG's tasks (one call per task)."""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


def landed_files(model: str, ds: str) -> list[str]:
    """Names of the files landed for a partition (empty if none yet)."""
    from pipelines.config import load_project
    from pipelines.storage import get_storage, partition_key

    project = load_project(model)
    keys = get_storage().list(partition_key("landing", project.dataset.name, ds))
    return [k.rsplit("/", 1)[-1] for k in keys if not k.rsplit("/", 1)[-1].startswith((".", "_"))]


def run_validation(model: str, ds: str) -> dict[str, Any]:
    """Validate a partition for a model project (see :func:`pipelines.validation.validate_partition`)."""
    from pipelines.config import load_project
    from pipelines.validation import validate_partition

    return validate_partition(load_project(model), ds)
