"""Partition keys: one parser, and the one helper every DAG resolves its partition with."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest

from pipelines.core.errors import InvalidPartitionKey
from pipelines.core.partitions import (
    date_range,
    ds_str,
    parse_ds,
    partitions_from_events,
    resolve_partition,
)


@pytest.mark.parametrize("good", ["2013-01-01", "2013-12-31", "2024-02-29"])
def test_valid_keys(good):
    assert ds_str(good) == good
    assert parse_ds(good).isoformat() == good


@pytest.mark.parametrize(
    "bad",
    [
        "2013-1-1",
        "2013-02-30",
        "2013-01-01/../x",
        "../2013-01-01",
        "2013-01-01 ",
        "",
        "20130101",
        "2013-13-01",
        "s3://b/2013-01-01",
        None,
        20130101,
    ],
)
def test_invalid_keys_are_rejected(bad):
    with pytest.raises(InvalidPartitionKey):
        parse_ds(bad)


def test_aware_datetime_uses_its_utc_date():
    eastern = dt.timezone(dt.timedelta(hours=-5))
    assert ds_str(dt.datetime(2013, 1, 1, 22, 0, tzinfo=eastern)) == "2013-01-02"


def test_date_range_is_inclusive_and_ordered():
    assert date_range("2013-01-30", "2013-02-02") == ["2013-01-30", "2013-01-31", "2013-02-01", "2013-02-02"]
    with pytest.raises(InvalidPartitionKey):
        date_range("2013-02-02", "2013-01-30")


def test_cron_run_uses_logical_date_not_data_interval():
    # Airflow 3 cron runs have a zero-length data interval: the logical date names the day.
    logical = dt.datetime(2013, 1, 5, tzinfo=dt.UTC)
    assert resolve_partition(params={"ds": None}, logical_date=logical) == "2013-01-05"


def test_explicit_param_wins():
    logical = dt.datetime(2026, 11, 29, tzinfo=dt.UTC)
    assert resolve_partition(params={"ds": "2013-01-03"}, logical_date=logical) == "2013-01-03"


def test_asset_triggered_run_reads_event_extra():
    events = {"asset": [SimpleNamespace(extra={"ds": "2013-02-01", "model": "m"})]}
    assert resolve_partition(params={}, logical_date=None, triggering_asset_events=events) == "2013-02-01"


def test_collapsed_asset_events_are_never_silently_dropped():
    events = {"a": [SimpleNamespace(extra={"ds": "2013-02-03"}), {"extra": {"ds": "2013-02-01"}}]}
    with pytest.raises(InvalidPartitionKey, match="several partitions"):
        resolve_partition(triggering_asset_events=events)
    assert partitions_from_events(events) == ["2013-02-01", "2013-02-03"]


def test_event_extra_is_validated():
    events = {"a": [SimpleNamespace(extra={"ds": "../../etc"})]}
    with pytest.raises(InvalidPartitionKey):
        resolve_partition(triggering_asset_events=events)


def test_nothing_to_resolve_is_a_named_error():
    with pytest.raises(InvalidPartitionKey, match="cannot resolve"):
        resolve_partition(params={}, logical_date=None, triggering_asset_events={})
