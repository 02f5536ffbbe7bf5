"""What a retrain run trains on, and why it is recorded as manual, schedule or drift."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest

from pipelines.core.errors import InvalidPartitionKey
from pipelines.training.steps import training_request

UTC = dt.UTC


def test_monthly_run_trains_through_the_day_before():
    r = training_request(
        params={"end_ds": None, "force": False}, logical_date=dt.datetime(2013, 3, 1, tzinfo=UTC), run_type="scheduled"
    )
    assert r == {
        "end_ds": "2013-02-28",
        "trigger": "schedule",
        "evidence": {"logical_date": "2013-03-01T00:00:00+00:00"},
        "force": False,
    }


def test_drift_event_names_the_partition_and_is_the_evidence():
    events = {"drift": [SimpleNamespace(extra={"ds": "2013-07-02", "report": "s3://r", "drift_share": 0.6})]}
    r = training_request(params={}, logical_date=None, triggering_asset_events=events, run_type="asset_triggered")
    assert r["end_ds"] == "2013-07-02" and r["trigger"] == "drift"
    assert r["evidence"]["events"][0]["report"] == "s3://r"


def test_scientist_param_wins_and_force_travels():
    r = training_request(
        params={"end_ds": "2013-01-31", "force": True},
        logical_date=dt.datetime(2026, 11, 29, tzinfo=UTC),
        run_type="manual",
    )
    assert r["end_ds"] == "2013-01-31" and r["trigger"] == "manual" and r["force"] is True


def test_bad_or_missing_inputs_are_named_errors():
    with pytest.raises(InvalidPartitionKey):
        training_request(params={"end_ds": "2013-02-30"})
    with pytest.raises(InvalidPartitionKey, match="cannot tell what to train on"):
        training_request(params={})
