"""Partition keys: parsed and validated in exactly one place.

A partition key is a calendar date written ``YYYY-MM-DD`` and nothing else, so
a key can never carry a path separator, ``..`` or a URL scheme out of the
storage root. Where a partition lives is the catalog's business
(:mod:`pipelines.core.catalog`).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from typing import Any

from pipelines.core.errors import InvalidPartitionKey

_DS_RE = re.compile(r"\d{4}-\d{2}-\d{2}")


def parse_ds(value: str | dt.date | dt.datetime) -> dt.date:
    """Parse and validate a partition key.

    Args:
        value: ``YYYY-MM-DD`` string, a date, or a datetime (its date is used;
            an aware datetime is converted to UTC first).

    Returns:
        The partition date.

    Raises:
        InvalidPartitionKey: the value is not exactly a valid date.
    """
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC)
        return value.date()
    if isinstance(value, dt.date):
        return value
    if not isinstance(value, str) or not _DS_RE.fullmatch(value):
        raise InvalidPartitionKey(f"invalid partition key {value!r}: expected a date YYYY-MM-DD")
    try:
        return dt.date.fromisoformat(value)
    except ValueError as exc:
        raise InvalidPartitionKey(f"invalid partition key {value!r}: {exc}") from None


def ds_str(value: str | dt.date | dt.datetime) -> str:
    """Canonical ``YYYY-MM-DD`` string of a validated partition key."""
    return parse_ds(value).isoformat()


EPOCH = dt.date(1970, 1, 1)


def metric_step(ds: str | dt.date) -> int:
    """A partition day as an MLflow metric step (days since 1970-01-01): per-day metrics are logged at it."""
    return (parse_ds(ds) - EPOCH).days


def step_ds(step: int) -> str:
    """The partition day a per-day metric's step stands for (:func:`metric_step` inverted)."""
    return (EPOCH + dt.timedelta(days=int(step))).isoformat()


def date_range(start: str | dt.date, end: str | dt.date) -> list[str]:
    """Inclusive list of partition keys from ``start`` to ``end``."""
    first, last = parse_ds(start), parse_ds(end)
    if last < first:
        raise InvalidPartitionKey(f"end {last} is before start {first}")
    return [(first + dt.timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]


def partitions_from_events(triggering_asset_events: Mapping[Any, Iterable[Any]]) -> list[str]:
    """Every partition named by a run's triggering asset events (validated, sorted, unique)."""
    keys = set()
    for events in triggering_asset_events.values():
        for event in events:
            extra = event.get("extra") if isinstance(event, Mapping) else getattr(event, "extra", None)
            if extra and extra.get("ds"):
                keys.add(ds_str(str(extra["ds"])))
    return sorted(keys)


def resolve_partition(
    *,
    params: Mapping[str, Any] | None = None,
    logical_date: dt.datetime | None = None,
    triggering_asset_events: Mapping[Any, Iterable[Any]] | None = None,
) -> str:
    """Resolve the partition a DAG run works on: the one helper every DAG uses.

    Airflow 3 gives cron runs a zero-length data interval, so the logical date
    (not ``data_interval_start``) names the day; asset-triggered runs have no
    logical date, so the partition travels in the triggering event's
    ``extra["ds"]``. An explicit ``ds`` param (trigger form, CLI ``--conf``)
    wins over both.

    Args:
        params: the run's params; a non-empty ``ds`` entry wins.
        logical_date: the run's logical date, if any.
        triggering_asset_events: mapping of asset to its events, each having
            an ``extra`` mapping (Airflow's ``triggering_asset_events``).

    Returns:
        The canonical ``YYYY-MM-DD`` partition key.

    Raises:
        InvalidPartitionKey: nothing names a partition, or it is not a date.
    """
    if params and params.get("ds"):
        return ds_str(str(params["ds"]))
    if logical_date is not None:
        return ds_str(logical_date)
    if triggering_asset_events:
        keys = partitions_from_events(triggering_asset_events)
        if len(keys) == 1:
            return keys[0]
        if len(keys) > 1:
            # Queued events collapse into one run in Airflow 3: never pick one
            # and silently drop the others.
            raise InvalidPartitionKey(
                f"the run was triggered for several partitions {keys}: use partitions_from_events and map over them"
            )
    raise InvalidPartitionKey(
        "cannot resolve the partition: no 'ds' param, no logical date and no asset event with extra['ds']"
    )
