"""Validation in bounded memory, at a size CI can afford: a 30,000-row day read 4,000 rows at a time.

The large runs (1M, 5M and 20M rows: rows/s and peak RSS) are in
``make bench-scale``; these check the behaviour that makes them possible:

- no step ever holds more than a batch of rows (GX, the masks and the spill
  see at most ``batch_rows`` rows at a time) and no landed file is read whole;
- the outputs are the same bytes as reading the day in one batch, with
  duplicated keys split across batches and files, and a halt is the same halt;
- a file that turns out unreadable after some of its batches were checked
  takes back those batches only.
"""

from __future__ import annotations

import gzip

import pytest

from pipelines.core import catalog
from pipelines.core.config import load_project
from pipelines.core.errors import ContractHalt
from pipelines.ingest.validation import validate_partition
from pipelines_ops.scale_data import land_large_day, widened_contract

DS = "2013-06-15"
ROWS = 30_000
BATCH = 4_000


@pytest.fixture(scope="module")
def project():
    return load_project("flights_delay")


@pytest.fixture(scope="module")
def contract(tmp_path_factory):
    return widened_contract(str(tmp_path_factory.mktemp("contract")), 1_000_000)


def outputs(storage) -> dict[str, bytes]:
    keys = storage.list(catalog.validated_dir("flights", DS)) + storage.list(catalog.quarantine_dir("flights", DS))
    return {k: storage.read_bytes(k) for k in keys}


def report_rules(storage) -> list[dict]:
    report = storage.read_json(catalog.validation_report("flights", DS))
    return [
        {k: v for k, v in r.items() if not (r["kind"] == "unique" and k.startswith("gx_"))} for r in report["rules"]
    ]


def test_no_step_holds_more_than_a_batch_and_no_file_is_read_whole(storage, project, contract, monkeypatch):
    land_large_day(storage, DS, ROWS)
    import pipelines.ingest.rules as rules
    import pipelines.ingest.spill as spill

    seen: dict[str, list[int]] = {"gx": [], "spill": []}
    real_run, real_add = rules.Expectations.run, spill.Spill.add

    def run(self, frame):
        seen["gx"].append(len(frame))
        return real_run(self, frame)

    def add(self, first_row, part, masks, q):
        seen["spill"].append(len(part.frame))
        return real_add(self, first_row, part, masks, q)

    def whole(key):
        raise AssertionError(f"{key} read whole")

    monkeypatch.setattr(rules.Expectations, "run", run)
    monkeypatch.setattr(spill.Spill, "add", add)
    monkeypatch.setattr(storage, "read_bytes", whole)
    summary = validate_partition(project, DS, storage=storage, contract=contract, batch_rows=BATCH)
    assert summary["validated_rows"] == ROWS
    assert max(seen["gx"]) <= BATCH and max(seen["spill"]) <= BATCH
    assert sum(seen["gx"]) == ROWS and len(seen["gx"]) >= ROWS // BATCH


def test_batched_outputs_are_the_bytes_of_one_batch_with_duplicates_across_batches(storage, project, contract):
    land_large_day(storage, DS, ROWS)
    # Duplicate keys spread over files and batches, nulls, an unknown airport, a malformed record.
    key = storage.read_bytes(catalog.landing_file("flights", DS, "flights_EWR.csv")).splitlines()
    lines = key[:1] + key[1:]
    lines.insert(9_000, lines[3])  # the row at 3 again, two batches later
    lines.insert(20, lines[-1])  # a row of the last batch, early
    lines[500] = lines[500].replace(b'"EWR"', b'"XXX"', 1)
    lines.append(b'"1","2","3"')  # does not split into the header's columns
    storage.write_bytes(catalog.landing_file("flights", DS, "flights_EWR.csv"), b"\n".join(lines) + b"\n")
    jfk = storage.read_bytes(catalog.landing_file("flights", DS, "flights_JFK.csv"))
    storage.write_bytes(catalog.landing_file("flights", DS, "flights_JFK.csv.gz"), gzip.compress(jfk))
    storage.delete(catalog.landing_file("flights", DS, "flights_JFK.csv"))
    storage.write_bytes(catalog.landing_file("flights", DS, "_SUCCESS"), b"")
    one = validate_partition(project, DS, storage=storage, contract=contract, batch_rows=1_000_000)
    one_out, one_rules = outputs(storage), report_rules(storage)
    many = validate_partition(project, DS, storage=storage, contract=contract, batch_rows=BATCH)
    assert one["rule_counts"]["natural_key_unique"] == 4  # both rows of each of the two keys
    assert {k: many[k] for k in ("validated_rows", "quarantined_rows", "rule_counts", "validated_sha256")} == {
        k: one[k] for k in ("validated_rows", "quarantined_rows", "rule_counts", "validated_sha256")
    }
    assert outputs(storage) == one_out
    assert report_rules(storage) == one_rules


def test_a_file_unreadable_after_some_batches_takes_back_only_its_own(storage, project, contract):
    land_large_day(storage, DS, ROWS)
    ewr = storage.read_bytes(catalog.landing_file("flights", DS, "flights_EWR.csv"))
    cut = ewr[: len(ewr) * 3 // 4] + b"\xff\xfe not utf-8\n" + ewr[len(ewr) * 3 // 4 :]
    storage.write_bytes(catalog.landing_file("flights", DS, "flights_EWR.csv"), cut)
    storage.write_bytes(catalog.landing_file("flights", DS, "_SUCCESS"), b"")
    with pytest.raises(ContractHalt) as halted:  # a third of the day unreadable: over the quarantine rate
        validate_partition(project, DS, storage=storage, contract=contract, batch_rows=BATCH)
    s = halted.value.summary
    (kept,) = s["quarantined_files"]
    assert kept["file"] == "flights_EWR.csv" and "not UTF-8" in kept["reason"]
    ewr_rows = sum(1 for line in ewr.splitlines()[1:] if line)
    assert kept["records"] == ewr_rows + 1  # its every line counted (the bad bytes split one line in two)
    assert s["landed_rows"] == ROWS - ewr_rows  # the other files' rows, none of the bad file's batches


def small_reads(monkeypatch) -> None:
    """Read storage 4 KiB and parse 64 KiB at a time: a small file crosses many read and block boundaries."""
    import pipelines.ingest.batches as batches

    monkeypatch.setattr(batches, "READ_BYTES", 4096)
    monkeypatch.setattr(batches, "BLOCK_BYTES", 1 << 16)


def test_gzip_members_shorter_than_a_row_read_as_one_file(storage, project, contract, monkeypatch):
    small_reads(monkeypatch)
    land_large_day(storage, DS, 3_000)
    key = catalog.landing_file("flights", DS, "flights_JFK.csv")
    data = storage.read_bytes(key)
    storage.delete(key)
    members = b"".join(gzip.compress(data[i : i + 37]) for i in range(0, len(data), 37))  # `cat a.gz b.gz ...`
    storage.write_bytes(catalog.landing_file("flights", DS, "flights_JFK.csv.gz"), members)
    storage.write_bytes(catalog.landing_file("flights", DS, "_SUCCESS"), b"")
    s = validate_partition(project, DS, storage=storage, contract=contract, batch_rows=500)
    assert s["validated_rows"] == 3_000 and s["lost_records"] == 0 and not s["quarantined_files"]


def test_a_corrupt_gzip_is_quarantined_whole_whatever_its_size(storage, project, contract, monkeypatch):
    """Inflating stops at the fault; the rest of the file is still read, so its size matches the listing."""
    small_reads(monkeypatch)
    land_large_day(storage, DS, 3_000)
    key = catalog.landing_file("flights", DS, "flights_LGA.csv")
    packed = bytearray(gzip.compress(storage.read_bytes(key)))
    packed[len(packed) // 3 : len(packed) // 3 + 64] = bytes(64)
    storage.delete(key)
    storage.write_bytes(catalog.landing_file("flights", DS, "flights_LGA.csv.gz"), bytes(packed))
    storage.write_bytes(catalog.landing_file("flights", DS, "_SUCCESS"), b"")
    with pytest.raises(ContractHalt) as halted:  # a third of the day unreadable
        validate_partition(project, DS, storage=storage, contract=contract, batch_rows=500)
    (kept,) = halted.value.summary["quarantined_files"]
    assert kept["file"] == "flights_LGA.csv.gz" and "corrupt gzip" in kept["reason"]
    assert kept["bytes"] == len(packed)


def test_a_parse_failure_counts_the_same_records_every_time(storage, project, contract, monkeypatch):
    """The reader reads ahead on its own thread while the failed file is drained: the count never races."""
    small_reads(monkeypatch)
    land_large_day(storage, DS, 6_000)
    key = catalog.landing_file("flights", DS, "flights_EWR.csv")
    lines = storage.read_bytes(key).split(b"\n")
    lines[5] = lines[5] + b',"a stray quote'  # swallows the rest of the file into one value
    storage.write_bytes(key, b"\n".join(lines))
    storage.write_bytes(catalog.landing_file("flights", DS, "_SUCCESS"), b"")
    seen = set()
    for _ in range(5):
        try:
            s = validate_partition(project, DS, storage=storage, contract=contract, batch_rows=500)
        except ContractHalt as exc:
            s = exc.summary
        seen.add((s["status"], s["landed_records"], s["lost_records"], s["validated_rows"]))
    assert len(seen) == 1, seen
    ((_, landed, _, _),) = seen
    assert landed == 6_000  # every line of every file, the broken one's included
