"""Moving a data root written before the catalog: every old key to its new one, nothing lost, nothing overwritten."""

from __future__ import annotations

import json

import pytest

from pipelines.core import catalog
from pipelines.core.migrate import migrate_layout
from pipelines.core.storage import LocalStorage

DS = "2013-01-31"

#: Keys an earlier version wrote, and where the catalog puts them now.
OLD_TO_NEW = {
    f"reports/flights/ds={DS}/validation.json": catalog.validation_report("flights", DS),
    f"reports/flights/ds={DS}/validation.html": catalog.validation_html("flights", DS),
    f"reports/flights_delay/ds={DS}/drift.json": catalog.drift_summary("flights_delay", DS),
    f"reports/flights_delay/ds={DS}/drift.html": catalog.drift_html("flights_delay", DS, "features"),
    f"reports/flights_delay/ds={DS}/drift_scores.html": catalog.drift_html("flights_delay", DS, "scores"),
    f"training/flights_delay/ds={DS}/_manifest.json": catalog.training_set_record("flights_delay", DS),
    f"checkpoints/flights_delay/ds={DS}/manifest.json": catalog.scoring_plan("flights_delay", DS),
}
#: Keys that did not move (or are not ours): never touched.
STAYING = [
    catalog.validated_file("flights", DS),
    catalog.scores_manifest("flights_delay", DS),
    catalog.training_file("flights_delay", DS, catalog.TRAIN_FILE),
    f"reports/flights/ds={DS}/notes.txt",
    "reports/flights/ds=not-a-date/validation.json",
    "reports/flights-validate.json",
]


@pytest.fixture
def old_root(tmp_path):
    storage = LocalStorage(tmp_path)
    for i, key in enumerate([*OLD_TO_NEW, *STAYING]):
        storage.write_bytes(key, json.dumps({"n": i}).encode())
    return storage


def test_every_old_key_moves_to_its_catalog_key_with_its_bytes(old_root):
    before = {key: old_root.read_bytes(key) for key in OLD_TO_NEW}
    result = migrate_layout(old_root)
    assert sorted((m["from"], m["to"]) for m in result["moved"]) == sorted(OLD_TO_NEW.items())
    assert result["kept"] == []
    for old, new in OLD_TO_NEW.items():
        assert not old_root.exists(old) and old_root.read_bytes(new) == before[old]
    assert all(old_root.exists(key) for key in STAYING)
    assert migrate_layout(old_root) == {"root": old_root.root, "dry_run": False, "moved": [], "kept": []}  # idempotent


def test_a_dry_run_changes_nothing(old_root):
    result = migrate_layout(old_root, dry_run=True)
    assert len(result["moved"]) == len(OLD_TO_NEW) and result["dry_run"]
    assert all(old_root.exists(old) and not old_root.exists(new) for old, new in OLD_TO_NEW.items())


def test_a_key_the_new_version_already_wrote_is_never_overwritten(old_root):
    newer = catalog.validation_report("flights", DS)
    old_root.write_bytes(newer, b'{"newer": true}')
    result = migrate_layout(old_root)
    assert [k["to"] for k in result["kept"]] == [newer]
    assert old_root.read_bytes(newer) == b'{"newer": true}'
    assert old_root.exists(f"reports/flights/ds={DS}/validation.json")  # left for a person to look at


def test_the_cli_command_migrates_the_configured_root(old_root, monkeypatch, capsys):
    from pipelines.cli import main

    monkeypatch.setenv("PIPELINES_DATA_ROOT", old_root.root)
    assert main(["migrate-layout", "--dry-run", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["moved"]) == len(OLD_TO_NEW)
    assert main(["migrate-layout"]) == 0
    assert f"moved {len(OLD_TO_NEW)} artifact(s)" in capsys.readouterr().out
    assert old_root.exists(catalog.scoring_plan("flights_delay", DS))


def test_a_move_interrupted_after_its_copy_is_finished_by_the_next_run(old_root):
    old = f"reports/flights_delay/ds={DS}/drift_scores.html"
    new = OLD_TO_NEW[old]
    old_root.write_bytes(new, old_root.read_bytes(old))  # the copy was made, the delete was not
    result = migrate_layout(old_root)
    assert {"from": old, "to": new} in result["moved"] and result["kept"] == []
    assert not old_root.exists(old)
