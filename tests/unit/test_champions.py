"""The alias history against a real (SQLite) MLflow registry, without training: interrupted moves,
hand-set aliases, a registry from before the history, malformed entries, and the gate's guards."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from pipelines.core import champions
from pipelines.core.errors import ConfigError, MissingInput
from pipelines.core.tracking import CHAMPION, PREVIOUS, alias_version

MODEL = "flights_delay"


@pytest.fixture
def registry(data_root):
    """A registered model with four versions and nothing else."""
    from pipelines.core.tracking import client

    c = client()
    c.create_registered_model(MODEL)
    for _ in range(4):
        c.create_model_version(MODEL, "s3://bucket/model", run_id=None)
    return c


@pytest.fixture
def project(data_root):
    from pipelines.core.config import load_project

    return load_project(MODEL)


def aliases(c) -> tuple[str | None, str | None]:
    out = []
    for alias in (CHAMPION, PREVIOUS):
        mv = alias_version(c, MODEL, alias)
        out.append(None if mv is None else str(mv.version))
    return out[0], out[1]


def test_a_registry_from_before_the_history_trusts_only_tags_written_after_a_move(registry):
    c = registry
    c.set_model_version_tag(MODEL, "1", "gate_decision", "promoted")
    c.set_model_version_tag(MODEL, "1", "promoted_from", "-")
    c.set_model_version_tag(MODEL, "2", "gate_decision", "promoted")  # a dry run or a lost race wrote this
    c.set_model_version_tag(MODEL, "3", "gate_decision", "promoted")
    c.set_model_version_tag(MODEL, "3", "promoted_from", "1")
    c.set_model_version_tag(MODEL, "3", "rolled_back", "bad scores")
    c.set_registered_model_alias(MODEL, CHAMPION, "1")
    entries = champions.history(c, MODEL)
    assert champions.ever_champion(entries) == {"1", "3"}
    assert champions.rolled_back(entries) == {"3": "rollback: bad scores"}
    champions.reconcile(c, MODEL)  # the first locked section stores the legacy record, then its own entry
    stored = champions.history(c, MODEL)
    assert [e["champion"] for e in stored] == ["1", "3", None, "1"]
    assert champions.rolled_back(stored) == {"3": "rollback: bad scores"}
    assert champions.reconcile(c, MODEL) is None  # in agreement now


def test_a_promotion_interrupted_after_the_move_is_recorded_and_a_hand_set_alias_never_counts(registry):
    c = registry
    c.set_registered_model_alias(MODEL, CHAMPION, "1")
    c.set_model_version_tag(MODEL, "1", "gate_decision", "passed")  # the gate passed it, then died after the move
    entry = champions.reconcile(c, MODEL)
    assert entry["event"] == "recovered" and entry["gated"] and entry["champion"] == "1"
    assert champions.ever_champion(champions.history(c, MODEL)) == {"1"}

    c.set_registered_model_alias(MODEL, CHAMPION, "2")  # set by hand in the MLflow UI: never gated
    entry = champions.reconcile(c, MODEL)
    assert entry["champion"] == "2" and entry["gated"] is False and entry["previous"] == "1"
    assert aliases(c) == ("2", "1")
    assert champions.ever_champion(champions.history(c, MODEL)) == {"1"}


def test_an_interrupted_rollback_is_completed_not_forgotten(registry):
    c = registry
    c.set_registered_model_alias(MODEL, CHAMPION, "2")
    c.set_registered_model_alias(MODEL, PREVIOUS, "1")
    c.set_model_version_tag(MODEL, "2", "gate_decision", "promoted")
    champions.reconcile(c, MODEL)
    champions.append(c, MODEL, "rollback", "1", "2", "rollback: bad scores")  # the intent; then the process died
    assert aliases(c) == ("2", "1")
    champions.reconcile(c, MODEL)
    assert aliases(c) == ("1", "2")
    assert champions.rolled_back(champions.history(c, MODEL)) == {"2": "rollback: bad scores"}
    assert c.get_model_version(MODEL, "2").tags["rolled_back"] == "rollback: bad scores"


def test_a_malformed_entry_is_skipped_and_sequence_comes_from_the_key(registry):
    c = registry
    c.set_registered_model_alias(MODEL, CHAMPION, "1")
    c.set_model_version_tag(MODEL, "1", "gate_decision", "passed")
    champions.reconcile(c, MODEL)
    c.set_registered_model_tag(MODEL, "alias_history.000002", json.dumps({"event": "promote", "seq": None}))
    c.set_registered_model_tag(MODEL, "alias_history.000003", "{not json")
    entries = champions.history(c, MODEL)
    assert [e["seq"] for e in entries] == [1, 2]  # 2 has no champion but is a readable entry; 3 is skipped
    entry = champions.append(c, MODEL, "promote", "3", "1", "why " * 3000)  # a long reason is cut to fit
    assert entry["seq"] == 4
    assert len(c.get_registered_model(MODEL).tags["alias_history.000004"]) <= champions.MAX_ENTRY_CHARS


def test_rollback_refuses_to_roll_back_to_the_champion_itself(registry, project):
    from pipelines.training.gate import rollback

    c = registry
    c.set_registered_model_alias(MODEL, CHAMPION, "1")
    c.set_registered_model_alias(MODEL, PREVIOUS, "1")  # a promotion died between the two alias moves
    c.set_model_version_tag(MODEL, "1", "gate_decision", "promoted")
    with pytest.raises(MissingInput, match="no previous-champion"):
        rollback(project, "oops")
    assert champions.rolled_back(champions.history(c, MODEL)) == {}


def test_the_gate_normalises_candidates_and_survives_a_deleted_rolled_back_version(registry):
    from pipelines.training.gate import _rolled_back_criterion, _version_number

    c = registry
    versions = c.search_model_versions(f"name='{MODEL}'")
    assert _version_number("01", versions, MODEL) == "1" and _version_number(None, versions, MODEL) == "4"
    with pytest.raises(ConfigError):
        _version_number("abc", versions, MODEL)
    with pytest.raises(MissingInput):
        _version_number("99", versions, MODEL)
    entries = [{"event": "rollback", "champion": "1", "previous": "2", "why": "bad", "seq": 1}]
    c.delete_model_version(MODEL, "2")
    assert _rolled_back_criterion(c, MODEL, "3", entries, False) is None
    assert _rolled_back_criterion(c, MODEL, "2", entries, False)["passed"] is False


def test_min_change_against_a_champion_at_zero_follows_the_sign_of_the_gain():
    from pipelines.training.gate import _min_change

    worse = _min_change("mae", SimpleNamespace(absolute=None, relative=0.01), {"mae": 3.0}, {"mae": 0.0})
    assert not worse["passed"] and worse["relative_gain"] == float("-inf")
    same = _min_change("mae", SimpleNamespace(absolute=None, relative=0.01), {"mae": 0.0}, {"mae": 0.0})
    assert not same["passed"]
