"""Contract compilation: the shipped contract's rules, and named errors for bad contracts."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipelines.core.contracts import load_contract
from pipelines.core.errors import ConfigError
from pipelines.core.settings import PROJECT_ROOT
from pipelines.ingest.rules import compute_masks

SOURCE = PROJECT_ROOT / "data_contracts" / "flights.odcs.yaml"


def test_shipped_contract_rules(contract):
    assert contract.version == "1.0.0"
    assert contract.primary_key == ["year", "month", "day", "carrier", "flight", "origin"]
    actions = {r.id: r.action for r in contract.all_rules}
    assert actions["row_count"] == "halt"
    assert actions["partition_date_matches"] == "halt"
    assert actions["quarantine_rate"] == "halt"
    assert actions["dest_known"] == "quarantine"
    assert actions["natural_key_unique"] == "quarantine"
    assert actions["tailnum_format"] == "warn"
    assert actions["type_mismatch"] == "quarantine" and actions["missing_column"] == "quarantine"
    required = {c.name for c in contract.columns if c.required}
    assert {f"{c}_required" for c in required} <= set(actions)
    assert contract.max_quarantine_rate == 0.05


def mutated(tmp_path: Path, mutate) -> Path:
    raw = yaml.safe_load(SOURCE.read_text())
    mutate(raw)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def prop(raw, name):
    return next(p for p in raw["schema"][0]["properties"] if p["name"] == name)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: prop(r, "dest")["quality"][0].update(severity="blocker"), "severity 'blocker' has no action"),
        (lambda r: prop(r, "dest")["quality"][0].pop("id"), "needs an id"),
        (lambda r: prop(r, "dest")["quality"][0].update(metric="freshness"), "unsupported metric"),
        (lambda r: prop(r, "dest").update(logicalType="geo"), "dest.logicalType"),
        (lambda r: r["schema"][0]["quality"][1]["arguments"].update(properties=["nope"]), "unknown: ['nope']"),
        (lambda r: r.pop("version"), "version"),
        (lambda r: r.update(apiVersion="v2.2.2"), "apiVersion"),
        (lambda r: prop(r, "carrier")["quality"][0].update(id="dest_known"), "duplicated rule ids"),
        (lambda r: prop(r, "hour")["quality"][0]["arguments"].update(minimum=30), "minimum is above maximum"),
        (lambda r: r["customProperties"][1].update(value=3), "maxQuarantineRate"),
        # ds is every table's Hive partition column; a key named like a scores column would be overwritten there.
        (lambda r: prop(r, "dest").update(name="ds"), "ds: a reserved column name"),
        (lambda r: prop(r, "flight").update(name="row_id"), "row_id: a natural-key column cannot be named"),
        (lambda r: prop(r, "carrier").update(name="score"), "score: a natural-key column cannot be named"),
    ],
)
def test_bad_contracts_fail_with_the_rule_named(tmp_path, mutate, message):
    with pytest.raises(ConfigError) as exc:
        load_contract(mutated(tmp_path, mutate))
    assert message in str(exc.value)
    assert str(tmp_path / "c.yaml") in str(exc.value)


def test_a_column_named_like_a_scores_column_is_fine_outside_the_key(tmp_path):
    contract = load_contract(mutated(tmp_path, lambda r: prop(r, "dest").update(name="label")))
    assert "label" in [c.name for c in contract.columns] and "label" not in contract.primary_key


def test_missing_contract(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_contract(tmp_path / "none.yaml")


def test_masks_follow_gx_null_semantics(contract):
    frame = pd.DataFrame({c: [None, None, None] for c in contract.column_names}).astype(
        {c.name: "float64" for c in contract.columns if c.logical_type in ("integer", "number")}
    )
    frame["dest"] = ["LAX", None, "XXX"]
    frame["dep_delay"] = [None, 9999.0, 10.0]
    masks = compute_masks(contract, frame, "2013-01-01")
    assert masks["dest_known"].tolist() == [False, False, True]  # null is dest_required's business
    assert masks["dest_required"].tolist() == [False, True, False]
    assert masks["dep_delay_range"].tolist() == [False, True, False]


# ---- partitionDateMatches on one date or timestamp column


def partition_rule(raw) -> dict:
    return next(q for q in raw["schema"][0]["quality"] if q["id"] == "partition_date_matches")


def with_partition_arguments(arguments: dict, *, extra_rule: dict | None = None):
    """A mutation: the flights contract plus a date and a timestamp column, its partition rule given ``arguments``."""

    def mutate(raw) -> None:
        raw["schema"][0]["properties"] += [
            {"name": "flight_date", "logicalType": "date"},
            {"name": "event_time", "logicalType": "timestamp"},
        ]
        partition_rule(raw)["arguments"] = arguments
        if extra_rule:
            raw["schema"][0]["quality"].append(extra_rule)

    return mutate


def test_partition_date_on_a_date_column(tmp_path):
    contract = load_contract(mutated(tmp_path, with_partition_arguments({"column": "flight_date"})))
    rule = contract.rule("partition_date_matches")
    assert rule.kind == "partition_date" and rule.columns == ("flight_date",)
    assert rule.params == {"column": "flight_date", "logical_type": "date"}
    assert rule.action == "halt"


def test_partition_date_on_a_timestamp_column_in_a_time_zone(tmp_path):
    args = {"column": "event_time", "timezone": "America/New_York"}
    contract = load_contract(mutated(tmp_path, with_partition_arguments(args)))
    rule = contract.rule("partition_date_matches")
    assert rule.columns == ("event_time",)
    assert rule.params == {"column": "event_time", "logical_type": "timestamp", "timezone": "America/New_York"}
    # The zone is the one the column's values without an offset are read in; other timestamp columns stay UTC.
    assert contract.column("event_time").timezone == "America/New_York"
    assert contract.column("time_hour").timezone == "UTC"


def test_partition_date_time_zone_defaults_to_utc(tmp_path):
    contract = load_contract(mutated(tmp_path, with_partition_arguments({"column": "event_time"})))
    assert contract.rule("partition_date_matches").params["timezone"] == "UTC"
    assert contract.column("event_time").timezone == "UTC"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        pytest.param(
            {"column": "flight_date", "year": "year", "month": "month", "day": "day"},
            "not both (got column, year, month, day)",
            id="both-forms",
        ),
        pytest.param({}, "arguments must name a date or timestamp column", id="neither-form"),
        pytest.param(
            {"column": "event_time", "timezone": "Mars/Olympus_Mons"},
            "partition_date_matches.timezone: unknown time zone 'Mars/Olympus_Mons'",
            id="unknown-zone",
        ),
        pytest.param({"column": "event_time", "timezone": "../../etc/passwd"}, "unknown time zone", id="zone-path"),
        pytest.param({"column": "event_time", "timezone": "localtime"}, "expected an IANA name", id="host-zone"),
        pytest.param({"column": "event_time", "timezone": -5}, "expected an IANA name", id="zone-number"),
        pytest.param(
            {"column": "dep_delay"},
            "partition_date_matches.column: dep_delay has logicalType number",
            id="number-column",
        ),
        pytest.param({"column": "year"}, "year has logicalType integer", id="integer-column"),
        pytest.param({"column": "carrier"}, "carrier has logicalType string", id="string-column"),
        pytest.param({"column": "nope"}, "'nope' is not a contract column", id="unknown-column"),
        pytest.param({"column": "flight_date", "timezone": "UTC"}, "a date has no time zone", id="zone-on-a-date"),
        pytest.param(
            {"column": "event_time", "timeZone": "America/New_York"}, "unknown arguments ['timeZone']", id="typo"
        ),
        pytest.param({"year": "year", "month": "month"}, "must name the year, month and day", id="two-parts"),
    ],
)
def test_bad_partition_date_arguments_fail_with_the_rule_named(tmp_path, arguments, message):
    with pytest.raises(ConfigError) as exc:
        load_contract(mutated(tmp_path, with_partition_arguments(arguments)))
    text = str(exc.value)
    assert message in text
    assert text.startswith(f"{tmp_path / 'c.yaml'}: schema.quality.partition_date_matches")
    assert "\n" not in text


def test_one_timestamp_column_cannot_be_read_in_two_time_zones(tmp_path):
    second = {
        "id": "event_day_in_utc",
        "type": "custom",
        "engine": "pipelines",
        "implementation": "partitionDateMatches",
        "arguments": {"column": "event_time", "timezone": "UTC"},
        "severity": "warning",
    }
    args = {"column": "event_time", "timezone": "America/New_York"}
    with pytest.raises(ConfigError, match=r"event_time is read in America/New_York by rule partition_date_matches"):
        load_contract(mutated(tmp_path, with_partition_arguments(args, extra_rule=second)))
