"""Lineage's cross-check on hand-made inputs: every break in the chain is named, none raises."""

from __future__ import annotations

from types import SimpleNamespace

from pipelines.core import catalog
from pipelines.core.config import load_project
from pipelines.core.storage import LocalStorage, sha256_file
from pipelines.lineage import _cross_check, _training_record

DS = "2013-07-03"


def scored(storage: LocalStorage) -> tuple[dict, SimpleNamespace]:
    key = catalog.validated_file("flights", DS)
    storage.write_bytes(key, b"validated rows")
    manifest = {
        "mlflow_run_id": "run-2",
        "training_fingerprint": "fp-2",
        "input": {"key": key, "uri": storage.uri(key), "sha256": sha256_file(storage.local_path(key))},
    }
    return manifest, SimpleNamespace(version="2", run_id="run-2", tags={"data_fingerprint": "fp-2"})


def test_a_whole_chain_has_no_problem(tmp_path):
    storage = LocalStorage(tmp_path)
    manifest, mv = scored(storage)
    assert _cross_check(storage, manifest, mv, {"fingerprint": "fp-2"}) == []


def test_every_break_is_named(tmp_path):
    storage = LocalStorage(tmp_path)
    manifest, mv = scored(storage)
    storage.write_bytes(manifest["input"]["key"], b"re-validated rows")
    problems = _cross_check(storage, {**manifest, "mlflow_run_id": "run-1"}, mv, {"fingerprint": "fp-3"})
    assert len(problems) == 3
    assert any("retrained since" in p for p in problems)
    assert any("re-validated" in p for p in problems)
    assert any("run-1" in p for p in problems)


def test_a_training_record_is_read_only_for_this_root_and_a_sane_tag(tmp_path):
    storage = LocalStorage(tmp_path)
    project = load_project("flights_delay")
    storage.write_json(catalog.training_set_record(project.name, DS), {"fingerprint": "fp-2"})
    here = storage.uri(catalog.training_dir(project.name, DS))
    assert _training_record(storage, project, {"training_set_uri": here, "end_ds": DS}) == {"fingerprint": "fp-2"}
    assert _training_record(storage, project, {"training_set_uri": "s3://elsewhere/x", "end_ds": DS}) == {}
    assert _training_record(storage, project, {"training_set_uri": here, "end_ds": "../../etc"}) is None
    assert _training_record(storage, project, {"training_set_uri": here}) is None
    assert _training_record(storage, project, {"training_set_uri": here, "end_ds": "2013-07-04"}) is None  # gone
    manifest, mv = scored(storage)
    assert any("no record" in p for p in _cross_check(storage, manifest, mv, None))
