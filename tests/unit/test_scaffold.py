"""The new-project template's inference, piece by piece: types, the partition day, the key, suggestions."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from pipelines.core import catalog
from pipelines.core.errors import ConfigError
from pipelines.scaffold.infer import draft_contract, infer_types
from pipelines.scaffold.render import flow, suggested_range
from pipelines.scaffold.sample import partition_day, read_sample

DAY = "2022-03-07"


def write_day(root, frame: pd.DataFrame, ds: str = DAY, name: str = "part.csv", marker: bool = True):
    folder = root / catalog.landing_dir("things", ds)
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_csv(folder / name, index=False)
    if marker:
        (folder / "_SUCCESS").write_text("")
    return folder


def test_types_read_every_value_as_validation_does(tmp_path):
    frame = pd.DataFrame(
        {
            "zip": ["02134", "10001", "94105"],  # a leading zero: a code, not a number
            "count": ["1", "-2", "30"],
            "big_id": ["12345678901234567890", "2", "3"],  # beyond 2**53: not an exact number
            "ratio": ["0.5", "1e3", ""],
            "flag": ["true", "FALSE", "true"],
            "bits": ["1", "0", "1"],
            "on": ["2022-03-07", "2022-03-07", None],
            "at": ["2022-03-07 05:00:00", "2022-03-07T06:30:00Z", "2022-03-07 23:59:59"],
            "word": ["a", "b", "3"],
        }
    )
    sample = read_sample(write_day(tmp_path, frame))
    types, dropped = infer_types(sample)
    assert types == {
        "zip": "string",
        "count": "integer",
        "big_id": "string",
        "ratio": "number",
        "flag": "boolean",
        "bits": "integer",
        "on": "date",
        "at": "timestamp",
        "word": "string",
    }
    assert dropped == {}


def test_a_column_some_files_lack_is_left_out(tmp_path):
    folder = write_day(tmp_path, pd.DataFrame({"a": [1, 2], "b": [3, 4]}), name="one.csv")
    pd.DataFrame({"a": [5]}).to_csv(folder / "two.csv", index=False)
    types, dropped = infer_types(read_sample(folder))
    assert types == {"a": "integer"} and dropped == {"b": "absent from 1 of 2 sample file(s)"}


def test_partition_folders_are_recognised_by_the_catalogs_naming(tmp_path):
    folder = tmp_path / catalog.landing_dir("things", DAY)
    assert partition_day(folder) == DAY
    assert partition_day(tmp_path / "2022-03-07") is None
    assert partition_day(tmp_path / "ds=2022-02-30") is None


def test_a_single_undated_file_takes_its_day_from_its_rows(tmp_path):
    path = tmp_path / "export.csv"
    pd.DataFrame({"id": ["a", "b", "c"], "on": [DAY] * 3, "x": [1.5, 2.5, 3.5]}).to_csv(path, index=False)
    sample = read_sample(path)
    draft, _ = draft_contract("things", sample)
    assert draft.partition == {"column": "on"} and sample.days[0].ds == DAY
    assert draft.primary_key == ["id"]
    assert any("read from its rows" in n for n in draft.notes)
    assert sample.ready_marker is None


def test_year_month_day_columns_date_the_partition_and_join_a_key_that_repeats_across_days(tmp_path):
    for i in range(3):
        day = dt.date(2022, 3, 7) + dt.timedelta(days=i)
        rows = pd.DataFrame(
            {"year": day.year, "month": day.month, "day": day.day, "site": ["x", "y"], "v": [1.0, 2.0 + i]}
        )
        write_day(tmp_path, rows, ds=day.isoformat())
    draft, frames = draft_contract("things", read_sample(tmp_path / catalog.landing_table("things")))
    assert draft.partition == {"year": "year", "month": "month", "day": "day"}
    assert draft.primary_key == ["year", "month", "day", "site"]
    assert len(frames) == 3 and draft.row_count == (1, 20)


def test_a_compound_key_is_found_when_no_column_is_unique(tmp_path):
    rows = pd.DataFrame({"store": ["a", "a", "b", "b"], "shelf": [1, 2, 1, 2], "qty": [3.0, 3.0, 4.0, 4.0]})
    draft, _ = draft_contract("things", read_sample(write_day(tmp_path, rows)))
    assert draft.primary_key == ["store", "shelf"]


def test_no_key_when_rows_repeat(tmp_path):
    rows = pd.DataFrame({"store": ["a", "a"], "qty": [3.0, 3.0]})
    draft, _ = draft_contract("things", read_sample(write_day(tmp_path, rows)))
    assert draft.primary_key == []


def test_suggested_ranges_widen_the_sample_and_keep_a_sign():
    assert suggested_range(10, 30, "integer") == (5, 35)
    assert suggested_range(0.33, 23.04, "number") == (0.0, 28.72)  # not below 0: the sample is not
    assert suggested_range(-4.0, 4.0, "number") == (-6.0, 6.0)
    assert suggested_range(7, 7, "integer") == (5, 9)


def test_flow_quotes_what_yaml_would_misread():
    assert flow("yes") == "'yes'" and flow("2022-03-07") == "'2022-03-07'" and flow("plain") == "plain"
    assert flow(None) == "null" and flow(["a", "b c"]) == "[a, b c]"
    assert flow({"expr": "hour(at)"}) == "{expr: hour(at)}"


def test_unreadable_and_mixed_samples_are_named_errors(tmp_path):
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet at all")
    with pytest.raises(ConfigError, match="cannot read"):
        read_sample(bad)
    mixed = tmp_path / "landing"
    write_day(mixed, pd.DataFrame({"a": [1]}))
    (mixed / catalog.landing_table("things") / "loose.csv").write_text("a\n1\n")
    with pytest.raises(ConfigError, match="both day folders and data files"):
        read_sample(mixed / catalog.landing_table("things"))


# ---- names the SQL of a generated expression, or the system, could trip on


def _infos(types: dict[str, str]) -> dict:
    from pipelines.scaffold.profile import ColumnInfo

    return {n: ColumnInfo(n, t, rows=3, distinct=3) for n, t in types.items()}


@pytest.mark.parametrize(
    ("types", "partition", "inputs"),
    [
        ({"order": "date", "v": "number"}, {"column": "order"}, {"weekday": ("order",)}),
        ({"end": "date", "v": "number"}, {"column": "end"}, {"weekday": ("end",)}),
        (
            {"Pickup At": "timestamp", "v": "number"},
            {"column": "Pickup At", "timezone": "UTC"},
            {"weekday": ("Pickup At",), "pickup_at_hour": ("Pickup At",)},
        ),
        (
            {"yr": "integer", "mo": "integer", "dy": "integer", "v": "number"},
            {"year": "yr", "month": "mo", "day": "dy"},
            {"weekday": ("yr", "mo", "dy")},
        ),
    ],
)
def test_calendar_features_read_the_partition_rules_own_columns_quoted(types, partition, inputs):
    """A keyword (order, end), spaces and capitals, or year/month/day columns named otherwise: the generated
    expressions parse, read exactly the rule's columns and compute the day's weekday (Monday = 0)."""
    from pipelines.core.expressions import CONTRACT_TYPES, Expression, check, evaluate
    from pipelines.scaffold.choices import choose_features

    _, _, exprs, _ = choose_features(_infos(types), "v", [], partition)
    assert {name: check(e.expr, list(types)) for name, e in exprs.items()} == inputs
    on = pd.Timestamp(DAY) + pd.Timedelta(hours=13, minutes=5)  # a Monday
    rows = pd.DataFrame(
        {
            "order": [on.date()],
            "end": [on.date()],
            "Pickup At": [on.tz_localize("UTC")],
            "yr": [2022.0],  # as validation publishes integers
            "mo": [3.0],
            "dy": [7.0],
        }
    )
    features = [
        Expression(n, e.expr, e.kind, e.calendar, check(e.expr), tuple(CONTRACT_TYPES[types[c]] for c in inputs[n]))
        for n, e in exprs.items()
    ]
    got = evaluate(rows, features)
    assert got["weekday"].tolist() == [0.0] and exprs["weekday"].calendar
    if "pickup_at_hour" in got:
        assert got["pickup_at_hour"].tolist() == [13.0]


def test_a_natural_key_is_never_a_column_named_like_a_scores_column(tmp_path):
    """row_id, score, label... are written beside the key in the scores table: another key, or none."""
    rows = pd.DataFrame({"row_id": ["r1", "r2", "r3"], "sku": ["a", "b", "c"], "qty": [3.0, 4.0, 5.0]})
    draft, _ = draft_contract("things", read_sample(write_day(tmp_path / "one", rows)))
    assert draft.primary_key == ["sku"]
    rows = pd.DataFrame({"label": ["x", "y", "z"], "qty": [3.0, 3.0, 3.0]})
    draft, _ = draft_contract("things", read_sample(write_day(tmp_path / "two", rows)))
    assert draft.primary_key == []


def test_a_sample_column_with_a_reserved_name_is_a_named_error(tmp_path):
    rows = pd.DataFrame({"ds": [DAY, DAY], "qty": [3.0, 4.0]})
    with pytest.raises(ConfigError, match=r"column 'ds' has a reserved name \(the partition column.*rename it"):
        draft_contract("things", read_sample(write_day(tmp_path, rows)))
