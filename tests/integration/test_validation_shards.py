"""A large day validated by shard tasks, then decided by one task: the same outcome as one task, at a size CI affords.

A 24,000-row day lands as 9 files (3 origins x 3); with ``shard_bytes``
shrunk it splits into 4 shards. Each test compares against the same day
validated in one task:

- shard tasks' results give the same published bytes, rule counts and
  report rules, duplicated keys spread over shards included;
- a missing, altered or foreign shard result is never used: the day's task
  reads that shard itself, with the same outcome;
- a redelivery between the shard tasks and the day's task: the results of
  the old delivery are ignored, the new one is validated whole;
- a halt caused by one shard's file publishes nothing;
- a shard planned for another delivery does nothing.
"""

from __future__ import annotations

import pytest

from pipelines.core import catalog
from pipelines.core.config import load_dataset
from pipelines.core.errors import ContractHalt
from pipelines.ingest import shards
from pipelines.ingest.validation import delivery, validate_partition
from pipelines_ops.scale_data import land_large_day, widened_contract

DS = "2013-06-16"
ROWS = 24_000


@pytest.fixture(scope="module")
def contract(tmp_path_factory):
    return widened_contract(str(tmp_path_factory.mktemp("contract")), 1_000_000)


def configured(**ingest):
    base = load_dataset("flights")
    return base.model_copy(update={"ingest": base.ingest.model_copy(update={"batch_rows": 2_000, **ingest})})


ONE = configured(max_shards=1)
SPLIT = configured(shard_bytes=50_000, max_shards=4)


def outputs(storage) -> dict[str, bytes]:
    keys = storage.list(catalog.validated_dir("flights", DS)) + storage.list(catalog.quarantine_dir("flights", DS))
    return {k: storage.read_bytes(k) for k in keys}


def report_rules(storage) -> list[dict]:
    report = storage.read_json(catalog.validation_report("flights", DS))
    return [{k: v for k, v in r.items() if not k.startswith("gx_")} for r in report["rules"]]


SAME = ("status", "landed_rows", "landed_records", "validated_rows", "quarantined_rows", "rule_counts", "lost_records")


def land(storage) -> None:
    """9 files; a key repeated across files of different shards, an unknown airport, a malformed record."""
    land_large_day(storage, DS, ROWS, files_per_origin=3)
    first = catalog.landing_file("flights", DS, "flights_EWR-0.csv")
    last = catalog.landing_file("flights", DS, "flights_LGA-2.csv")
    a, b = storage.read_bytes(first).splitlines(), storage.read_bytes(last).splitlines()
    b.insert(5, a[7])  # a row of the first shard again in the last
    b[40] = b[40].replace(b'"LGA"', b'"XXX"', 1)
    b.append(b'"1","2","3"')
    storage.write_bytes(last, b"\n".join(b) + b"\n")
    storage.write_bytes(catalog.landing_file("flights", DS, "_SUCCESS"), b"")


def one_task(storage, contract) -> tuple[dict, dict, list]:
    summary = validate_partition(ONE, DS, storage=storage, contract=contract)
    return summary, outputs(storage), report_rules(storage)


def run_shard_tasks(storage, contract) -> list[dict]:
    tasks = shards.shard_tasks(SPLIT, DS, delivery(SPLIT, DS, storage), contract=contract)
    return [
        shards.validate_shard(SPLIT, DS, t["shard"], t["delivery"], storage=storage, contract=contract) for t in tasks
    ]


def assert_same(summary, storage, reference) -> None:
    one, one_out, one_rules = reference
    assert {k: summary[k] for k in SAME} == {k: one[k] for k in SAME}
    assert summary["validated_sha256"] == one["validated_sha256"]
    assert outputs(storage) == one_out
    assert report_rules(storage) == one_rules


def test_the_plan_splits_the_day_into_runs_of_whole_files(storage, contract):
    land(storage)
    landed = delivery(SPLIT, DS, storage)
    plan = shards.plan(SPLIT.ingest, landed)
    assert len(plan) == 4 and all(plan)
    assert [i for shard in plan for i in shard] == list(range(9))  # every file once, in delivery order
    assert shards.plan(ONE.ingest, landed) == [list(range(9))]
    assert (
        shards.shard_tasks(ONE, DS, landed, contract=contract) == []
    )  # a small day: no shard task, one task as before


def test_shard_tasks_results_give_the_bytes_of_one_task(storage, contract):
    land(storage)
    reference = one_task(storage, contract)
    assert reference[0]["rule_counts"]["natural_key_unique"] == 2
    done = run_shard_tasks(storage, contract)
    assert [d["status"] for d in done] == ["done"] * 4
    assert sum(d["rows"] for d in done) == reference[0]["landed_rows"] - 1  # the malformed record is no parsed row
    assert [d["status"] for d in run_shard_tasks(storage, contract)] == ["already done"] * 4  # a retry redoes nothing
    summary = validate_partition(SPLIT, DS, storage=storage, contract=contract)
    assert summary["shards"] == {"count": 4, "by_shard_tasks": 4}
    assert_same(summary, storage, reference)
    assert not storage.list(catalog.validation_shards("flights", DS))  # results removed once the day is decided


def test_a_missing_altered_or_forged_shard_result_is_read_again_by_the_day(storage, contract):
    land(storage)
    reference = one_task(storage, contract)
    done = run_shard_tasks(storage, contract)
    ident = shards.shard_tasks(SPLIT, DS, delivery(SPLIT, DS, storage), contract=contract)[0]["delivery"]
    storage.delete(catalog.shard_result("flights", DS, ident, 1))
    doc = storage.read_json(catalog.shard_result("flights", DS, ident, 2))
    batch = doc["batches"][0]["key"]
    storage.write_bytes(batch, storage.read_bytes(batch) + b"x")  # not the batch the result names
    doc3 = storage.read_json(catalog.shard_result("flights", DS, ident, 3))
    doc3["delivery"] = "f" * 16  # a result that claims another delivery
    storage.write_json(catalog.shard_result("flights", DS, ident, 3), doc3)
    doc0 = storage.read_json(catalog.shard_result("flights", DS, ident, 0))
    doc0["batches"][0] = doc["batches"][1]  # a genuine batch, of another shard: rows this shard never read
    storage.write_json(catalog.shard_result("flights", DS, ident, 0), doc0)
    summary = validate_partition(SPLIT, DS, storage=storage, contract=contract)
    assert len(done) == 4 and summary["shards"] == {"count": 4, "by_shard_tasks": 0}
    assert_same(summary, storage, reference)


def test_a_redelivery_after_the_shard_tasks_is_validated_whole(storage, contract, monkeypatch):
    land(storage)
    run_shard_tasks(storage, contract)
    key = catalog.landing_file("flights", DS, "flights_JFK-1.csv")
    lines = storage.read_bytes(key).splitlines()
    storage.write_bytes(key, b"\n".join(lines[:-100]) + b"\n")  # 100 rows fewer
    storage.write_bytes(catalog.landing_file("flights", DS, "_SUCCESS"), b"")
    # Meanwhile a run under another plan reads the new delivery: results of another id, written after it landed.
    two = configured(shard_bytes=50_000, max_shards=2)
    tasks = shards.shard_tasks(two, DS, delivery(two, DS, storage), contract=contract)
    for t in tasks:
        shards.validate_shard(two, DS, t["shard"], t["delivery"], storage=storage, contract=contract)
    summary = validate_partition(SPLIT, DS, storage=storage, contract=contract)
    assert summary["shards"] == {"count": 4, "by_shard_tasks": 0}
    # The old delivery's results (written before this one landed) are gone; the other run's are kept an hour.
    assert set(catalog.shard_deliveries(storage, "flights", DS)) == {tasks[0]["delivery"]}
    monkeypatch.setattr(shards, "STALE_SECONDS", 0)
    validate_partition(SPLIT, DS, storage=storage, contract=contract)
    assert not storage.list(catalog.validation_shards("flights", DS))
    split_out = outputs(storage)
    reference = one_task(storage, contract)
    assert reference[0]["landed_rows"] == ROWS + 1 - 100 + 1  # the repeat and the malformed line's row
    assert {k: summary[k] for k in SAME} == {k: reference[0][k] for k in SAME}
    assert split_out == reference[1]


def test_a_halt_from_one_shard_publishes_nothing(storage, contract):
    land(storage)
    validate_partition(ONE, DS, storage=storage, contract=contract)  # a published day to replace
    assert storage.list(catalog.validated_dir("flights", DS))
    key = catalog.landing_file("flights", DS, "flights_LGA-2.csv")
    data = storage.read_bytes(key)
    assert b'"2013","6","16"' in data
    storage.write_bytes(key, data.replace(b'"2013","6","16"', b'"2013","6","17"', 1))  # a critical rule fires
    storage.write_bytes(catalog.landing_file("flights", DS, "_SUCCESS"), b"")
    run_shard_tasks(storage, contract)
    with pytest.raises(ContractHalt) as halted:
        validate_partition(SPLIT, DS, storage=storage, contract=contract)
    assert halted.value.rules == ["partition_date_matches"]
    assert halted.value.summary["shards"]["by_shard_tasks"] == 4
    assert not storage.list(catalog.validated_dir("flights", DS))
    assert not storage.list(catalog.quarantine_dir("flights", DS))
    assert not storage.list(catalog.validation_shards("flights", DS))


def test_a_shard_planned_for_another_delivery_does_nothing(storage, contract):
    land(storage)
    (first, *_) = shards.shard_tasks(SPLIT, DS, delivery(SPLIT, DS, storage), contract=contract)
    storage.write_bytes(catalog.landing_file("flights", DS, "flights_EWR-0.csv"), b"year,month\n2013,6\n")
    storage.write_bytes(catalog.landing_file("flights", DS, "_SUCCESS"), b"")
    out = shards.validate_shard(SPLIT, DS, 0, first["delivery"], storage=storage, contract=contract)
    assert out["status"] == "skipped" and "changed" in out["reason"]
    assert not storage.list(catalog.validation_shards("flights", DS))


def test_results_of_another_shard_plan_are_never_used(storage, contract):
    """Shard tasks ran under 4 shards; the day's task runs under 2 (max_shards tuned in between)."""
    land(storage)
    reference = one_task(storage, contract)
    assert [d["status"] for d in run_shard_tasks(storage, contract)] == ["done"] * 4
    two = configured(shard_bytes=50_000, max_shards=2)
    summary = validate_partition(two, DS, storage=storage, contract=contract)
    assert summary["shards"] == {"count": 2, "by_shard_tasks": 0}  # none of the 4-shard results fits 2 shards
    assert_same(summary, storage, reference)


def test_files_with_other_columns_in_other_shards(storage, contract):
    """A file of the last shard delivers a column the others do not: duplicate keys are still found by name."""
    land(storage)
    key = catalog.landing_file("flights", DS, "flights_LGA-1.csv")
    lines = storage.read_bytes(key).splitlines()
    lines = [lines[0] + b',"note"'] + [line + b',"x"' for line in lines[1:]]
    storage.write_bytes(key, b"\n".join(lines) + b"\n")
    storage.write_bytes(catalog.landing_file("flights", DS, "_SUCCESS"), b"")
    reference = one_task(storage, contract)
    assert reference[0]["rule_counts"]["natural_key_unique"] == 2
    run_shard_tasks(storage, contract)
    summary = validate_partition(SPLIT, DS, storage=storage, contract=contract)
    assert summary["shards"] == {"count": 4, "by_shard_tasks": 4}
    assert_same(summary, storage, reference)


def test_a_broken_or_forged_result_is_read_again_not_trusted(storage, contract):
    land(storage)
    reference = one_task(storage, contract)
    run_shard_tasks(storage, contract)
    ident = shards.shard_tasks(SPLIT, DS, delivery(SPLIT, DS, storage), contract=contract)[0]["delivery"]
    result = lambda i: catalog.shard_result("flights", DS, ident, i)  # noqa: E731
    storage.write_bytes(result(0), storage.read_bytes(result(0))[:100])  # truncated
    storage.write_json(result(1), ["not", "a", "result"])
    doc = storage.read_json(result(2))
    doc["files"][0]["key"] = catalog.landing_file("flights", "2013-06-17", "secret.csv")  # another object
    storage.write_json(result(2), doc)
    doc = storage.read_json(result(3))
    doc["attempt"] = "../../../etc"
    storage.write_json(result(3), doc)
    # A shard task asked again does not take a broken result for a done shard.
    again = shards.validate_shard(SPLIT, DS, 0, ident, storage=storage, contract=contract)
    assert again["status"] == "done"
    summary = validate_partition(SPLIT, DS, storage=storage, contract=contract)
    assert summary["shards"] == {"count": 4, "by_shard_tasks": 1}  # only the redone shard 0
    assert_same(summary, storage, reference)


def test_a_shard_failing_on_its_last_try_leaves_the_shard_to_the_day(monkeypatch):
    from pipelines.ingest import steps

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(shards, "validate_shard", broken)
    shard = {"ds": DS, "shard": 2, "of": 4, "delivery": "0" * 16}
    with pytest.raises(OSError):
        steps.run_shard("flights", shard)  # an early try: Airflow retries it
    out = steps.run_shard("flights", shard, last_try=True)
    assert out["status"] == "failed" and "disk full" in out["reason"]


def test_a_result_whose_counts_are_not_its_batches_is_read_again(storage, contract):
    land(storage)
    reference = one_task(storage, contract)
    run_shard_tasks(storage, contract)
    ident = shards.shard_tasks(SPLIT, DS, delivery(SPLIT, DS, storage), contract=contract)[0]["delivery"]
    doc = storage.read_json(catalog.shard_result("flights", DS, ident, 1))
    doc["counts"]["origin_known"] += 1  # a rule count its batches' verdicts do not add up to
    storage.write_json(catalog.shard_result("flights", DS, ident, 1), doc)
    doc = storage.read_json(catalog.shard_result("flights", DS, ident, 2))
    doc["quarantine_rows"] += 1
    storage.write_json(catalog.shard_result("flights", DS, ident, 2), doc)
    summary = validate_partition(SPLIT, DS, storage=storage, contract=contract)
    assert summary["shards"] == {"count": 4, "by_shard_tasks": 2}
    assert_same(summary, storage, reference)
