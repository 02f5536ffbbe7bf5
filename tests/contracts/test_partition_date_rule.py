"""``partitionDateMatches`` on one ``date`` or ``timestamp`` column (with a time zone), end to end.

1. how the landing reader types date and timestamp values (text with and
   without offsets, Parquet dates and timestamps with and without a zone, local
   times a DST change skips or repeats);
2. the row masks against an independent oracle (the instant seen in the zone
   falls on the partition day), and Great Expectations' count against the
   masks, at the edges of the day in zones with DST, a 30-minute DST and a
   skipped day;
3. deliveries validated through :func:`validate_partition` with rows near local
   midnight on both 2013 DST change days in America/New_York: which rows are
   quarantined, with which rule and reason, or which rule halts the day.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.core import catalog
from pipelines.core.contracts import Contract, load_contract
from pipelines.core.errors import ContractHalt
from pipelines.ingest.decision import gx_agrees
from pipelines.ingest.landing import coerce_column
from pipelines.ingest.rules import compute_masks, partition_bounds, run_expectations
from pipelines.ingest.validation import validate_partition
from tests.contracts.test_flights_contract import DATASET, assert_reconciled, land, read_outputs

NY = "America/New_York"
UTC = dt.UTC
RULE = "event_on_partition_day"


def contract_doc(arguments: dict, *, severity: str = "error") -> dict:
    """A small ODCS v3 contract: an id, a date, a timestamp and a note; the partition rule on ``arguments``."""
    return {
        "apiVersion": "v3.1.0",
        "kind": "DataContract",
        "id": "events",
        "version": "1.0.0",
        "status": "active",
        "customProperties": [
            {"property": "severityActions", "value": {"critical": "halt", "error": "quarantine", "warning": "warn"}},
            {"property": "maxQuarantineRate", "value": 1.0},
        ],
        "schema": [
            {
                "name": "events",
                "quality": [
                    {
                        "id": RULE,
                        "type": "custom",
                        "engine": "pipelines",
                        "implementation": "partitionDateMatches",
                        "arguments": arguments,
                        "severity": severity,
                    }
                ],
                "properties": [
                    {"name": "id", "logicalType": "integer", "required": True, "primaryKey": True},
                    {"name": "flight_date", "logicalType": "date"},
                    {"name": "event_time", "logicalType": "timestamp"},
                    {"name": "note", "logicalType": "string"},
                ],
            }
        ],
    }


def events_contract(tmp_path: Path, arguments: dict, *, severity: str = "error") -> Contract:
    path = tmp_path / f"events-{severity}.odcs.yaml"
    path.write_text(yaml.safe_dump(contract_doc(arguments, severity=severity), sort_keys=False))
    return load_contract(path)


def chunked(values: list, typ: pa.DataType) -> pa.ChunkedArray:
    return pa.chunked_array([pa.array(values, typ)])


def utc(*args: int) -> pd.Timestamp:
    return pd.Timestamp(dt.datetime(*args, tzinfo=UTC))


# ---- 1. typing


@pytest.mark.parametrize(
    ("values", "typ", "zone", "expected"),
    [
        pytest.param(
            ["2013-01-01T05:17:00-05:00", "2013-01-01T10:17:00Z", "2013-01-01 10:17:00+0000"],
            pa.string(),
            NY,
            [utc(2013, 1, 1, 10, 17)] * 3,
            id="offsets-keep-their-instant",
        ),
        pytest.param(
            ["2013-01-01 05:17:00", "2013-01-01T05:17", "2013-07-01 05:17:00", "2013-01-01"],
            pa.string(),
            NY,
            [utc(2013, 1, 1, 10, 17), utc(2013, 1, 1, 10, 17), utc(2013, 7, 1, 9, 17), utc(2013, 1, 1, 5)],
            id="naive-text-is-local-in-the-zone",
        ),
        pytest.param(
            ["2013-01-01 05:17:00", "2013-01-01"],
            pa.string(),
            "UTC",
            [utc(2013, 1, 1, 5, 17), utc(2013, 1, 1)],
            id="utc",
        ),
        pytest.param(
            ["2013-03-10 02:30:00", "2013-11-03 01:30:00", "2013-11-03T01:30:00-05:00", "soon", None],
            pa.string(),
            NY,
            [None, None, utc(2013, 11, 3, 6, 30), None, None],
            id="skipped-and-repeated-local-times-are-mismatches",
        ),
        pytest.param(
            [dt.datetime(2013, 1, 1, 5, 17), dt.datetime(2013, 3, 10, 2, 30), None],
            pa.timestamp("ns"),
            NY,
            [utc(2013, 1, 1, 10, 17), None, None],
            id="parquet-naive-timestamp",
        ),
        pytest.param(
            [dt.datetime(2013, 1, 1, 10, 17, tzinfo=UTC)],
            pa.timestamp("us", tz="Asia/Tokyo"),
            NY,
            [utc(2013, 1, 1, 10, 17)],
            id="parquet-zoned-timestamp",
        ),
        pytest.param([dt.date(2013, 1, 1)], pa.date32(), NY, [utc(2013, 1, 1, 5)], id="parquet-date"),
    ],
)
def test_timestamps_are_typed_as_utc_instants(values, typ, zone, expected):
    series, fails = coerce_column(chunked(values, typ), "timestamp", zone)
    assert str(series.dtype) == "datetime64[us, UTC]"
    assert [None if pd.isna(v) else v for v in series] == expected
    # Present but unreadable: flagged (type_mismatch); a null is no mismatch.
    assert fails.tolist() == [v is not None and e is None for v, e in zip(values, expected, strict=True)]


@pytest.mark.parametrize(
    ("values", "typ", "expected"),
    [
        pytest.param(["2013-01-06", None, "9999-12-31"], pa.string(), ["2013-01-06", None, "9999-12-31"], id="iso"),
        pytest.param(
            ["2013-01-06", "2013-01-06 00:00:00", "2013-01-06T00:00", "2013-01-06T05:00", "2013-02-30", "6/1/2013"],
            pa.string(),
            ["2013-01-06", "2013-01-06", "2013-01-06", None, None, None],
            id="text-with-a-time-or-no-date",
        ),
        pytest.param(
            ["2013-01-06T00:00:00Z", "2013-01-06T00:00:00-05:00"], pa.string(), [None, None], id="text-with-an-offset"
        ),
        pytest.param([dt.date(2013, 1, 6), None], pa.date32(), ["2013-01-06", None], id="parquet-date32"),
        pytest.param(
            [dt.datetime(2013, 1, 6), dt.datetime(2013, 1, 6, 0, 0, 1)],
            pa.timestamp("ns"),
            ["2013-01-06", None],
            id="parquet-timestamp-at-midnight",
        ),
        pytest.param(
            [dt.datetime(2013, 1, 6, 5, tzinfo=UTC), dt.datetime(2013, 1, 6, tzinfo=UTC)],
            pa.timestamp("us", tz=NY),
            ["2013-01-06", None],
            id="parquet-zoned-midnight-is-its-zones-date",
        ),
        pytest.param([20130106], pa.int64(), [None], id="a-number"),
    ],
)
def test_dates_are_typed_as_midnights(values, typ, expected):
    series, fails = coerce_column(chunked(values, typ), "date")
    assert str(series.dtype) == "datetime64[us]"
    assert [None if pd.isna(v) else v.date().isoformat() for v in series] == expected
    assert fails.tolist() == [v is not None and e is None for v, e in zip(values, expected, strict=True)]


# ---- 2. masks against an oracle, GX against the masks


def on_day(value: dt.datetime | None, zone: str, ds: str) -> bool:
    """The oracle: a null passes; an instant passes when, seen in ``zone``, its date is the partition day."""
    return value is None or value.astimezone(ZoneInfo(zone)).date() == dt.date.fromisoformat(ds)


def edges(zone: str, ds: str) -> list[dt.datetime | None]:
    """Instants at and around both ends of the local day (computed independently of the rule), noon and a null."""
    day = dt.date.fromisoformat(ds)
    tz = ZoneInfo(zone)
    tick = dt.timedelta(microseconds=1)
    out: list[dt.datetime | None] = [None]
    for d in (day, day + dt.timedelta(days=1)):
        midnight = dt.datetime.combine(d, dt.time(), tzinfo=tz).astimezone(UTC)
        out += [midnight - tick, midnight, midnight + tick, midnight - dt.timedelta(hours=1)]
    noon = dt.datetime.combine(day, dt.time(12), tzinfo=tz).astimezone(UTC)
    return [*out, noon, noon + dt.timedelta(hours=13), noon - dt.timedelta(hours=13)]


CASES = [
    ("UTC", "2013-01-06"),
    (NY, "2013-03-10"),  # 23 hours
    (NY, "2013-11-03"),  # 25 hours
    ("Australia/Lord_Howe", "2013-10-06"),  # a 30-minute DST change
    ("Asia/Kathmandu", "2013-01-06"),  # +05:45
    ("Pacific/Apia", "2011-12-30"),  # skipped: no instant falls on it
]


@pytest.mark.parametrize(("zone", "ds"), CASES)
def test_timestamp_masks_and_gx_agree_with_the_oracle(tmp_path, zone, ds):
    contract = events_contract(tmp_path, {"column": "event_time", "timezone": zone})
    values = edges(zone, ds)
    frame = pd.DataFrame(
        {
            "id": pd.Series(range(len(values)), dtype="float64"),
            "flight_date": pd.Series(pd.NaT, index=range(len(values)), dtype="datetime64[us]"),
            "event_time": pd.Series(pd.to_datetime(values, utc=True)).dt.as_unit("us"),
            "note": pd.Series([None] * len(values), dtype=object),
        }
    )
    expected = [not on_day(v, zone, ds) for v in values]
    mask = compute_masks(contract, frame, ds)[RULE]
    assert mask.tolist() == expected
    gx = run_expectations(contract, frame, ds)["by_rule"][RULE]
    assert gx["unexpected_count"] == sum(expected) and gx["parts"] == 1
    assert gx_agrees(gx, int(mask.sum())) and gx["success"] == (not any(expected))


def test_date_masks_and_gx_agree(tmp_path):
    contract = events_contract(tmp_path, {"column": "flight_date"})
    dates = ["2013-01-05", "2013-01-06", None, "2013-01-07", "2013-01-06", "2012-01-06"]
    frame = pd.DataFrame(
        {
            "id": pd.Series(range(len(dates)), dtype="float64"),
            "flight_date": pd.Series(pd.to_datetime(dates)).dt.as_unit("us"),
            "event_time": pd.Series(pd.NaT, index=range(len(dates)), dtype="datetime64[us, UTC]"),
            "note": pd.Series([None] * len(dates), dtype=object),
        }
    )
    expected = [d is not None and d != "2013-01-06" for d in dates]
    mask = compute_masks(contract, frame, "2013-01-06")[RULE]
    assert mask.tolist() == expected
    gx = run_expectations(contract, frame, "2013-01-06")["by_rule"][RULE]
    assert gx["unexpected_count"] == sum(expected) == 3 and gx["parts"] == 1


ZONES = [
    "UTC",
    NY,
    "Europe/London",
    "Australia/Lord_Howe",
    "Asia/Kathmandu",
    "Pacific/Apia",
    "Pacific/Kiritimati",
    "America/St_Johns",
]


@pytest.fixture(scope="module")
def utc_contract(tmp_path_factory) -> Contract:
    return events_contract(tmp_path_factory.mktemp("contracts"), {"column": "event_time"})


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    zone=st.sampled_from(ZONES),
    day=st.dates(dt.date(2010, 1, 1), dt.date(2016, 12, 31)),
    offsets=st.lists(st.integers(-36 * 3600 * 10**6, 60 * 3600 * 10**6), min_size=1, max_size=20),
)
def test_timestamp_masks_match_the_oracle_on_any_day(utc_contract, zone, day, offsets):
    """Instants from a day and a half before the UTC day to two and a half after, in zones with odd offsets and DST."""
    ds = day.isoformat()
    params = {"column": "event_time", "logical_type": "timestamp", "timezone": zone}
    contract = dataclasses.replace(utc_contract, rules=(dataclasses.replace(utc_contract.rule(RULE), params=params),))
    base = dt.datetime.combine(day, dt.time(), tzinfo=UTC)
    values = [base + dt.timedelta(microseconds=o) for o in offsets]
    frame = pd.DataFrame({"event_time": pd.Series(pd.to_datetime(values, utc=True)).dt.as_unit("us")})
    mask = compute_masks(contract, frame, ds)[RULE]
    assert mask.tolist() == [not on_day(v, zone, ds) for v in values]


def test_a_day_the_zone_skipped_has_no_instant(utc_contract):
    params = {"column": "event_time", "logical_type": "timestamp", "timezone": "Pacific/Apia"}
    start, end = partition_bounds(dataclasses.replace(utc_contract.rule(RULE), params=params), "2011-12-30")
    assert start == end == dt.datetime(2011, 12, 30, 10, tzinfo=UTC)


# ---- 3. deliveries through validate_partition


def csv_bytes(rows: list[dict]) -> bytes:
    return pd.DataFrame(rows).to_csv(index=False).encode()


def parquet_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def quarantined(storage, ds: str) -> dict[int, tuple[list[str], list[str]]]:
    """Quarantined rows by id: their rule ids and reasons."""
    _, q, _ = read_outputs(storage, ds)
    return {int(r["id"]): (r["_rule_ids"], r["_reasons"]) for r in q.to_pylist()}


def rule_report(storage, ds: str) -> dict:
    return next(r for r in read_outputs(storage, ds)[2]["rules"] if r["id"] == RULE)


#: 2013-11-03 in New York: EDT (-04:00) until 02:00, then EST (-05:00); the day lasts 25 hours.
FALL_BACK = [
    # (id, event_time as delivered, what happens)
    (1, "2013-11-03T00:00:00-04:00", "validated"),  # local midnight, the first instant of the day
    (2, "2013-11-03T03:59:59.999999Z", RULE),  # 23:59:59.999999 EDT on the 2nd
    (3, "2013-11-03T01:30:00-04:00", "validated"),  # the first 01:30 (EDT)
    (4, "2013-11-03T01:30:00-05:00", "validated"),  # the second 01:30 (EST)
    (5, "2013-11-04T04:59:59Z", "validated"),  # 23:59:59 EST: the 25th hour (a fixed -04:00 day would miss it)
    (6, "2013-11-04T05:00:00Z", RULE),  # the next local midnight
    (7, "2013-11-03 00:30:00", "validated"),  # no offset: local (read as UTC it would be the 2nd in New York)
    (8, "2013-11-03 23:30:00", "validated"),  # no offset: local, 04:30 UTC on the 4th
    (9, "2013-11-03 01:30:00", "type_mismatch"),  # no offset in the repeated hour: which 01:30?
    (10, "half past one", "type_mismatch"),
    (11, "", "validated"),  # a null: not the partition rule's business (the column is not required)
    (12, "2013-11-02 23:59:59", RULE),  # no offset, the day before
]


def test_a_timestamp_partition_in_new_york_on_the_fall_back_day(storage, project, tmp_path):
    ds = "2013-11-03"
    contract = events_contract(tmp_path, {"column": "event_time", "timezone": NY})
    rows = [{"id": i, "flight_date": ds, "event_time": t, "note": why} for i, t, why in FALL_BACK]
    land(storage, {"events.csv": csv_bytes(rows)}, ds)
    s = validate_partition(project, ds, contract=contract)
    assert_reconciled(storage, s, ds)  # every row accounted for, GX's count equals the mask's
    assert s["rule_counts"] == {RULE: 3, "type_mismatch": 2}
    q = quarantined(storage, ds)
    assert {i: ids for i, (ids, _) in q.items()} == {i: [why] for i, _, why in FALL_BACK if why != "validated"}
    assert q[2][1] == [f"event_time is not on the partition day in {NY}"]
    assert q[9][1] == ["event_time is not a valid timestamp"]
    validated, _, _ = read_outputs(storage, ds)
    assert str(validated.schema.field("event_time").type) == "timestamp[us, tz=UTC]"
    assert validated.schema.field("flight_date").type == pa.date32()
    got = {r["id"]: r["event_time"] for r in validated.to_pylist()}
    assert sorted(got) == [i for i, _, why in FALL_BACK if why == "validated"]
    assert got[5] == dt.datetime(2013, 11, 4, 4, 59, 59, tzinfo=UTC)
    assert got[7] == dt.datetime(2013, 11, 3, 4, 30, tzinfo=UTC)  # published as the instant it was locally
    assert got[8] == dt.datetime(2013, 11, 4, 4, 30, tzinfo=UTC)
    assert got[11] is None
    assert {r["flight_date"] for r in validated.to_pylist()} == {dt.date(2013, 11, 3)}
    # The GX record counts what the masks decided.
    report = rule_report(storage, ds)
    assert report["rows"] == report["gx_unexpected_count"] == 3 and report["gx_success"] is False


def test_a_timestamp_partition_in_new_york_on_the_spring_forward_day_halts(storage, project, tmp_path):
    """2013-03-10 lasts 23 hours; a Parquet file with zoned instants and one with local times, a critical rule."""
    ds = "2013-03-10"
    contract = events_contract(tmp_path, {"column": "event_time", "timezone": NY}, severity="critical")
    zoned = [
        (1, dt.datetime(2013, 3, 10, 5, tzinfo=UTC)),  # 00:00 EST: the first instant
        (2, dt.datetime(2013, 3, 10, 4, 59, 59, tzinfo=UTC)),  # 23:59:59 EST on the 9th
        (3, dt.datetime(2013, 3, 11, 3, 59, 59, tzinfo=UTC)),  # 23:59:59 EDT: the last second
        (4, dt.datetime(2013, 3, 11, 4, tzinfo=UTC)),  # 00:00 EDT on the 11th (a fixed -05:00 day would take it)
    ]
    local = [
        (5, dt.datetime(2013, 3, 10, 1, 59, 59)),
        (6, dt.datetime(2013, 3, 10, 2, 30)),  # skipped by the clocks: a type mismatch
        (7, dt.datetime(2013, 3, 10, 3, 0)),
        (8, dt.datetime(2013, 3, 10, 23, 59, 59)),
    ]

    def table(rows: list[tuple[int, dt.datetime]], typ: pa.DataType) -> pa.Table:
        return pa.table(
            {
                "id": pa.array([i for i, _ in rows], pa.int64()),
                "flight_date": pa.array([dt.date(2013, 3, 10)] * len(rows), pa.date32()),
                "event_time": pa.array([t for _, t in rows], typ),
                "note": pa.array([None] * len(rows), pa.string()),
            }
        )

    files = {
        "zoned.parquet": parquet_bytes(table(zoned, pa.timestamp("us", tz="UTC"))),
        "local.parquet": parquet_bytes(table(local, pa.timestamp("us"))),
    }
    land(storage, files, ds)
    with pytest.raises(ContractHalt) as exc:
        validate_partition(project, ds, contract=contract)
    assert exc.value.rules == [RULE]
    s = exc.value.summary
    assert s["rule_counts"] == {RULE: 2, "type_mismatch": 1}
    assert not storage.list(catalog.validated_dir(DATASET, ds))
    report = next(r for r in storage.read_json(catalog.validation_report(DATASET, ds))["rules"] if r["id"] == RULE)
    assert report["rows"] == report["gx_unexpected_count"] == 2

    # Without the two rows of other days the same day publishes, the skipped local time quarantined.
    files["zoned.parquet"] = parquet_bytes(table([zoned[0], zoned[2]], pa.timestamp("us", tz="UTC")))
    land(storage, files, ds)
    s = validate_partition(project, ds, contract=contract)
    assert_reconciled(storage, s, ds)
    assert s["rule_counts"] == {"type_mismatch": 1}
    assert set(quarantined(storage, ds)) == {6}
    got = {r["id"]: r["event_time"] for r in read_outputs(storage, ds)[0].to_pylist()}
    assert got[5] == dt.datetime(2013, 3, 10, 6, 59, 59, tzinfo=UTC)  # EST
    assert got[7] == dt.datetime(2013, 3, 10, 7, tzinfo=UTC)  # EDT
    assert got[8] == dt.datetime(2013, 3, 11, 3, 59, 59, tzinfo=UTC)


def test_a_date_partition_from_csv_text_and_parquet_dates(storage, project, tmp_path):
    ds = "2013-01-06"
    contract = events_contract(tmp_path, {"column": "flight_date"})
    text = [
        (1, "2013-01-06", "validated"),
        (2, "2013-01-05", RULE),
        (3, "2013-01-06 00:00:00", "validated"),
        (4, "2013-01-06T05:00", "type_mismatch"),  # a time of day is no date
        (5, "2013-02-30", "type_mismatch"),
        (6, "", "validated"),
    ]
    rows = [{"id": i, "flight_date": d, "event_time": "2013-01-06T12:00:00Z", "note": why} for i, d, why in text]
    parquet = pa.table(
        {
            "id": pa.array([7, 8], pa.int64()),
            "flight_date": pa.array([dt.date(2013, 1, 6), dt.date(2013, 1, 7)], pa.date32()),
            "event_time": pa.array([None, None], pa.timestamp("us", tz="UTC")),
            "note": pa.array(["validated", RULE], pa.string()),
        }
    )
    land(storage, {"events.csv": csv_bytes(rows), "more.parquet": parquet_bytes(parquet)}, ds)
    s = validate_partition(project, ds, contract=contract)
    assert_reconciled(storage, s, ds)
    assert s["rule_counts"] == {RULE: 2, "type_mismatch": 2}
    q = quarantined(storage, ds)
    assert {i: ids for i, (ids, _) in q.items()} == {2: [RULE], 4: ["type_mismatch"], 5: ["type_mismatch"], 8: [RULE]}
    assert q[2][1] == ["flight_date is not the partition day"]
    assert q[4][1] == ["flight_date is not a valid date"]
    validated = read_outputs(storage, ds)[0]
    assert validated.schema.field("flight_date").type == pa.date32()
    assert {r["id"]: r["flight_date"] for r in validated.to_pylist()} == {
        1: dt.date(2013, 1, 6),
        3: dt.date(2013, 1, 6),
        6: None,
        7: dt.date(2013, 1, 6),
    }
    report = rule_report(storage, ds)
    assert report["rows"] == report["gx_unexpected_count"] == 2
