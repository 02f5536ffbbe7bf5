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
    ],
)
def test_bad_contracts_fail_with_the_rule_named(tmp_path, mutate, message):
    with pytest.raises(ConfigError) as exc:
        load_contract(mutated(tmp_path, mutate))
    assert message in str(exc.value)
    assert str(tmp_path / "c.yaml") in str(exc.value)


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
