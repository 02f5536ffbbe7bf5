"""Entry points of the ingest DAG's tasks (one call per task)."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ValidationOutcome:
    """What the ingest DAG's validate task returns, and announces on the dataset's validated asset."""

    ds: str
    dataset: str
    status: str
    landed_rows: int
    validated_rows: int
    quarantined_rows: int
    rules_failed: list[str]
    report: str

    @classmethod
    def of(cls, summary: dict[str, Any]) -> ValidationOutcome:
        return cls(**{k: summary[k] for k in cls.__dataclass_fields__})

    def xcom(self) -> dict[str, Any]:
        """The task's return value (shown in the UI's XCom tab)."""
        return {k: v for k, v in asdict(self).items() if k != "dataset"}

    def asset_extra(self) -> dict[str, Any]:
        """The validated asset event's ``extra``: the partition, and where its report is."""
        return {
            "ds": self.ds,
            "dataset": self.dataset,
            "validated_rows": self.validated_rows,
            "report": self.report,
        }


def landing_ready(dataset: str, ds: str) -> list[dict[str, Any]] | None:
    """Whether a partition's delivery is complete (its data files and, when the dataset has one, its ready
    marker): None while it is not; once it is, the shard tasks it calls for (none for a day one task reads)."""
    from pipelines.core.config import load_dataset
    from pipelines.core.errors import NothingLanded
    from pipelines.core.storage import get_storage
    from pipelines.ingest.shards import shard_tasks
    from pipelines.ingest.validation import delivery

    config = load_dataset(dataset)
    try:
        landed = delivery(config, ds, get_storage())
    except NothingLanded as waiting:
        log.info("%s; waiting", waiting)
        return None
    shards = shard_tasks(config, ds, landed)
    size = sum(landed.sizes.values())
    log.info(
        "%s ds=%s: %d landed file(s), %d bytes; ready: %s",
        config.name,
        ds,
        len(landed.files),
        size,
        f"{len(shards)} shard tasks read it, one task decides" if shards else "one task validates it",
    )
    return shards


def run_shard(dataset: str, shard: dict[str, Any], *, last_try: bool = False) -> dict[str, Any]:
    """Read one shard of a large day (see :func:`pipelines.ingest.shards.validate_shard`).

    A shard is an optimisation: on its last try, an error is logged and
    returned (``status: failed``) instead of raised, so the day's task reads
    the shard itself rather than the whole day waiting on it. Earlier tries
    raise, and Airflow retries them.
    """
    from pipelines.core.config import load_dataset
    from pipelines.ingest.shards import validate_shard

    try:
        return validate_shard(load_dataset(dataset), shard["ds"], int(shard["shard"]), str(shard["delivery"]))
    except Exception as exc:
        if not last_try:
            raise
        log.exception(
            "shard %s of %s ds=%s failed on its last try; the day's task reads it", shard["shard"], dataset, shard["ds"]
        )
        return {"shard": shard["shard"], "status": "failed", "reason": f"{type(exc).__name__}: {exc}"}


def run_validation(dataset: str, ds: str) -> ValidationOutcome:
    """Validate a partition of a dataset (see :func:`pipelines.ingest.validation.validate_partition`)."""
    from pipelines.core.config import load_dataset
    from pipelines.ingest.validation import validate_partition

    return ValidationOutcome.of(validate_partition(load_dataset(dataset), ds))
