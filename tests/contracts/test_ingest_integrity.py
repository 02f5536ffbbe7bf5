"""Deliveries that used to lose rows silently or crash validation, each reproduced as upstream would send it.

1. a stray quote hides most of a file;
2. an empty or header-only (or missing) airport file publishes two thirds of a day;
3. the ready marker vouches for files listed before it, or for a redelivery written after it;
4. a symlinked partition folder escapes the storage root;
5. tracebacks: nested/binary Parquet values in quarantine, severities a rule cannot
   carry out, rule bounds given as strings, contract files that are not UTF-8.

Every published day must account for every record counted on the bytes:
``landed_records == validated_rows + quarantined_records + lost_records``.
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from pipelines.core import catalog
from pipelines.core.contracts import load_contract
from pipelines.core.errors import ConfigError, ContractHalt, DeliveryChanged, NothingLanded
from pipelines.ingest.validation import validate_partition
from tests.contracts.test_flights_contract import DATASET, DS, csv, day_frames, land, read_outputs

CONTRACT = Path(__file__).parents[2] / "data_contracts" / "flights.odcs.yaml"


def day_files() -> dict[str, bytes]:
    return {f"flights_{o}.csv": csv(f) for o, f in day_frames().items()}


def assert_records_reconciled(storage, s) -> None:
    """Every record counted on the bytes is validated, inside a quarantined row, or lost; storage agrees."""
    assert s["landed_records"] == s["validated_rows"] + s["quarantined_records"] + s["lost_records"], s
    validated, quarantine, _ = read_outputs(storage)
    assert validated.num_rows == s["validated_rows"]
    assert quarantine.num_rows == s["quarantined_rows"]
    assert sum(quarantine.column("_records").to_pylist()) == s["quarantined_records"]


# ---- 1. a stray quote


def with_stray_quote(data: bytes, line: int, close_at: int | None = None) -> bytes:
    """Open a quote in the ``dest`` field of ``line`` (1 = first data line), optionally closed ``close_at``."""
    lines = data.split(b"\n")
    lines[line] = lines[line].replace(b",", b',"', 1)
    if close_at is not None:
        lines[close_at] = lines[close_at].replace(b",", b'",', 1)
    return b"\n".join(lines)


def test_a_stray_quote_to_the_end_of_a_file_halts_with_every_record_counted(storage, project):
    files = day_files()
    jfk = len(day_frames()["JFK"])
    files["flights_JFK.csv"] = with_stray_quote(files["flights_JFK.csv"], 3)
    land(storage, files)
    with pytest.raises(ContractHalt) as exc:
        validate_partition(project, DS)
    s = exc.value.summary
    assert "quarantine_rate" in exc.value.rules and "malformed_row" in s["rules_failed"]
    assert s["landed_records"] == 832  # counted on the bytes, not by the parser
    assert s["quarantine_rate"] > (jfk - 3) / 832 - 0.01
    assert not storage.list(catalog.validated_dir(DATASET, DS))


def test_a_stray_quote_closed_later_quarantines_every_line_it_swallowed(storage, project):
    files = day_files()
    files["flights_EWR.csv"] = with_stray_quote(files["flights_EWR.csv"], 3, close_at=5)  # swallows lines 3..5
    land(storage, files)
    s = validate_partition(project, DS)  # 3 of 832 records: under the 5 % halt
    assert s["status"] == "published"
    assert s["landed_records"] == 832
    assert s["quarantined_records"] >= 3
    assert_records_reconciled(storage, s)
    _, q, _ = read_outputs(storage)
    spanning = [r for r in q.to_pylist() if "malformed_row" in r["_rule_ids"]]
    assert spanning and spanning[0]["_records"] == 3


def test_a_value_that_spans_lines_is_malformed_and_counts_every_line(storage, project):
    files = day_files()
    lines = files["flights_LGA.csv"].split(b"\n")
    fields = lines[3].split(b",")
    fields[11] = b'"' + fields[11] + b"\n" + lines[4].split(b",")[11] + b'"'  # tailnum now holds a line break
    files["flights_LGA.csv"] = b"\n".join([*lines[:3], b",".join(fields), *lines[5:]])
    land(storage, files)
    s = validate_partition(project, DS)
    assert s["landed_records"] == 832  # lines 3 and 4 became one record that spans two lines
    assert s["quarantined_rows"] == 1 and s["quarantined_records"] == 2
    assert_records_reconciled(storage, s)
    [row] = read_outputs(storage)[1].to_pylist()
    assert row["_rule_ids"] == ["malformed_row"] and "span 2 lines" in row["_reasons"][0]


def test_a_stray_quote_in_a_file_above_the_readers_block_size_is_counted(storage, project):
    frames = day_frames()
    big = b"".join([csv(frames["EWR"])] + [csv(frames["EWR"]).split(b"\n", 1)[1]] * 60)  # about 5 MB, > 4 MiB blocks
    files = {**day_files(), "flights_EWR.csv": with_stray_quote(big, 2, close_at=40)}
    land(storage, files)
    with pytest.raises(ContractHalt) as exc:  # its duplicated keys halt it anyway; the count must still hold
        validate_partition(project, DS)
    s = exc.value.summary
    assert s["landed_records"] == big.count(b"\n") - 1 + len(frames["JFK"]) + len(frames["LGA"])


# ---- 2. empty, header-only and missing sources


@pytest.mark.parametrize("payload", [b"", b"year,month,day,dep_time\n"], ids=["zero-bytes", "header-only"])
def test_an_empty_airport_file_halts_the_day(storage, project, payload):
    files = day_files()
    files["flights_JFK.csv"] = payload
    land(storage, files)
    with pytest.raises(ContractHalt) as exc:
        validate_partition(project, DS)
    assert exc.value.rules == ["delivery_incomplete", "empty_file"]
    s = exc.value.summary
    assert s["empty_files"] == ["flights_JFK.csv"]
    rule = next(
        r
        for r in storage.read_json(catalog.validation_report(DATASET, DS))["rules"]
        if r["id"] == "delivery_incomplete"
    )
    assert rule["observed_value"] == {"short_sources": {"JFK": 0.0}}


def test_a_missing_airport_file_halts_the_day(storage, project):
    files = day_files()
    del files["flights_JFK.csv"]
    land(storage, files)
    with pytest.raises(ContractHalt) as exc:
        validate_partition(project, DS)
    assert exc.value.rules == ["delivery_incomplete"]


def test_an_empty_side_file_only_warns_when_the_contract_says_so(storage, project, tmp_path):
    contract = contract_with(tmp_path, emptyFileSeverity="warning")
    files = {**day_files(), "flights_corrections.csv": b"year,month,day\n"}
    land(storage, files)
    s = validate_partition(project, DS, contract=contract)
    assert s["status"] == "published" and s["rules_warned"] == ["empty_file"]
    assert [f["file"] for f in s["quarantined_files"]] == ["flights_corrections.csv"]
    assert_records_reconciled(storage, s)


# ---- 3. the ready marker


def test_a_file_written_after_the_marker_is_a_redelivery_in_progress(storage, project, data_root):
    land(storage, day_files())
    first = validate_partition(project, DS)
    # Upstream redelivers: it rewrites one airport's file, the old marker still there.
    redelivered = data_root / catalog.landing_file(DATASET, DS, "flights_JFK.csv")
    redelivered.write_bytes(csv(day_frames()["JFK"].head(20)))
    marker = data_root / catalog.landing_file(DATASET, DS, "_SUCCESS")
    os.utime(redelivered, ns=(marker.stat().st_mtime_ns + 1_000_000, marker.stat().st_mtime_ns + 1_000_000))
    with pytest.raises(NothingLanded, match="written after the _SUCCESS marker"):
        validate_partition(project, DS)
    # The published day is the first delivery's, untouched.
    assert read_outputs(storage)[0].num_rows == first["validated_rows"]
    # Upstream finishes: a new marker vouches for the new delivery.
    os.utime(marker, ns=(redelivered.stat().st_mtime_ns + 1_000_000,) * 2)
    with pytest.raises(ContractHalt):  # 20 JFK flights: short of its share
        validate_partition(project, DS)


def test_a_delivery_that_changes_while_it_is_validated_writes_nothing(storage, project, data_root, monkeypatch):
    land(storage, day_files())
    first = validate_partition(project, DS)
    import pipelines.ingest.rules as rules

    real = rules.Expectations.run

    def upstream_writes_meanwhile(*args, **kwargs):  # while GX checks a batch
        storage.write_bytes(catalog.landing_file(DATASET, DS, "flights_late.csv"), csv(day_frames()["EWR"].head(3)))
        return real(*args, **kwargs)

    monkeypatch.setattr(rules.Expectations, "run", upstream_writes_meanwhile)
    report_before = storage.read_bytes(catalog.validation_report(DATASET, DS))
    with pytest.raises(DeliveryChanged):
        validate_partition(project, DS)
    assert storage.read_bytes(catalog.validation_report(DATASET, DS)) == report_before
    assert read_outputs(storage)[0].num_rows == first["validated_rows"]


def test_the_marker_is_looked_up_before_the_files_are_listed(storage, project, monkeypatch):
    """A run without the sensor lists only after it has seen the marker, so files listed are the marker's."""
    land(storage, day_files(), complete=False)
    calls: list[str] = []
    real_info, real_list = storage.info, storage.list_info
    monkeypatch.setattr(storage, "info", lambda key: calls.append("info") or real_info(key))
    monkeypatch.setattr(storage, "list_info", lambda prefix: calls.append("list") or real_list(prefix))
    with pytest.raises(NothingLanded, match="no _SUCCESS marker"):
        validate_partition(project, DS, storage=storage)
    assert calls[0] == "info"


# ---- 4. paths


def test_a_symlinked_partition_folder_out_of_the_root_is_refused(storage, project, data_root, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    for name, data in {**day_files(), "_SUCCESS": b""}.items():
        (outside / name).write_bytes(data)
    (outside / "secret.csv").write_bytes(b"year,month\n2013,1\n")
    folder = data_root / catalog.landing_dir(DATASET, DS)
    folder.parent.mkdir(parents=True, exist_ok=True)
    folder.symlink_to(outside, target_is_directory=True)
    with pytest.raises(ConfigError, match="outside the storage root"):
        validate_partition(project, DS)
    assert not (data_root / "quarantine").exists() and not (data_root / "validated").exists()
    assert (outside / "secret.csv").is_file()


# ---- 5. crashes


def test_quarantined_parquet_rows_keep_nested_and_binary_values_as_text(storage, project):
    frames = day_frames()
    typed = pq.read_table(io.BytesIO(_parquet(frames["JFK"])))
    n = typed.num_rows
    typed = typed.append_column("legs", pa.array([[1, 2]] * n, pa.list_(pa.int64())))
    typed = typed.append_column("crew", pa.array([{"pilot": "a", "age": 40}] * n))
    typed = typed.append_column("blob", pa.array([b"\xff\x00"] * n, pa.binary()))
    typed = typed.set_column(typed.column_names.index("dest"), "dest", pa.array(["XXX"] * 2 + ["BOS"] * (n - 2)))
    buf = io.BytesIO()
    pq.write_table(typed, buf)
    files = {**day_files(), "flights_JFK.parquet": buf.getvalue()}
    del files["flights_JFK.csv"]
    land(storage, files)
    s = validate_partition(project, DS)
    assert_records_reconciled(storage, s)
    _, q, _ = read_outputs(storage)
    row = q.to_pylist()[0]
    assert row["legs"] == "[1, 2]" and row["crew"] == '{"pilot": "a", "age": 40}'
    assert row["blob"] == "base64:/wA="


def _parquet(frame) -> bytes:
    import pandas as pd

    buf = io.BytesIO()
    pd.read_csv(io.BytesIO(csv(frame))).to_parquet(buf, index=False)
    return buf.getvalue()


def contract_with(tmp_path: Path, **props) -> object:
    """The flights contract with some customProperties replaced, loaded."""
    doc = yaml.safe_load(CONTRACT.read_text())
    for item in doc["customProperties"]:
        if item["property"] in props:
            item["value"] = props.pop(item["property"])
    doc["customProperties"] += [{"property": k, "value": v} for k, v in props.items()]
    path = tmp_path / "variant.odcs.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return load_contract(path)


@pytest.mark.parametrize(
    ("prop", "severity"),
    [("malformedRowSeverity", "warning"), ("requiredSeverity", "warning"), ("typeMismatchSeverity", "warning")],
)
def test_a_severity_a_rule_cannot_carry_out_is_refused_when_the_contract_loads(tmp_path, prop, severity):
    with pytest.raises(ConfigError, match=re.escape(prop) + ".*maps to 'warn', which this rule cannot do"):
        contract_with(tmp_path, **{prop: severity})


def test_range_bounds_given_as_strings_are_refused_when_the_contract_loads(tmp_path):
    text = CONTRACT.read_text().replace(
        "arguments: {minimum: 1, maximum: 12}", 'arguments: {minimum: "1", maximum: "12"}'
    )
    path = tmp_path / "strings.odcs.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"month_range\.minimum: expected a finite number, got '1'"):
        load_contract(path)


def test_a_contract_that_is_not_utf8_is_a_named_error(tmp_path):
    path = tmp_path / "latin1.odcs.yaml"
    path.write_bytes(CONTRACT.read_bytes().replace(b"Departures", "D\u00e9parts".encode("latin-1")))
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_contract(path)


def _trigger(prop: str) -> dict[str, bytes]:
    """A delivery that breaks the rule a severity property governs (a few rows, or one side file)."""
    frames = day_frames()
    files = {f"flights_{o}.csv": csv(f) for o, f in frames.items()}
    ewr = frames["EWR"]
    if prop == "typeMismatchSeverity":
        ewr.loc[ewr.index[:3], "air_time"] = "1h02m"
    elif prop == "requiredSeverity":
        ewr.loc[ewr.index[:3], "dest"] = ""
    elif prop == "missingColumnSeverity":
        files["flights_extra.csv"] = csv(
            frames["LGA"].head(3).assign(flight=[9001, 9002, 9003]).drop(columns="tailnum")
        )
    elif prop == "malformedRowSeverity":
        files["flights_EWR.csv"] = csv(ewr) + b"2013,1,6,1,2,3\n"
        return files
    elif prop == "emptyFileSeverity":
        files["flights_extra.csv"] = b"year,month,day\n"
    elif prop == "incompleteDeliverySeverity":
        del files["flights_JFK.csv"]
    files["flights_EWR.csv"] = csv(ewr)
    return files


#: Combinations that cannot work end to end: the value would be published as null, or the rule has no rows.
REFUSED = {
    ("typeMismatchSeverity", "warning"),
    ("malformedRowSeverity", "warning"),
    ("requiredSeverity", "warning"),
    ("emptyFileSeverity", "error"),
    ("incompleteDeliverySeverity", "error"),
}


@pytest.mark.parametrize("severity", ["critical", "error", "warning"])
@pytest.mark.parametrize(
    "prop",
    [
        "typeMismatchSeverity",
        "missingColumnSeverity",
        "malformedRowSeverity",
        "requiredSeverity",
        "emptyFileSeverity",
        "incompleteDeliverySeverity",
    ],
)
def test_every_severity_either_works_end_to_end_or_is_refused_on_load(storage, project, tmp_path, prop, severity):
    if (prop, severity) in REFUSED:
        with pytest.raises(ConfigError, match=prop):
            contract_with(tmp_path, **{prop: severity})
        return
    contract = contract_with(tmp_path, **{prop: severity})
    land(storage, _trigger(prop))
    try:
        s = validate_partition(project, DS, contract=contract)
    except ContractHalt as halt:
        assert severity == "critical", halt.rules
        assert not storage.list(catalog.validated_dir(DATASET, DS))
        return
    assert severity != "critical"
    assert s["rules_warned" if severity == "warning" else "rules_quarantined"], s
    assert_records_reconciled(storage, s)
    assert s["landed_rows"] == s["validated_rows"] + s["quarantined_rows"]


def test_a_row_count_rule_that_would_quarantine_is_refused(tmp_path):
    text = CONTRACT.read_text()
    text = text.replace(
        "mustBeBetween: [100, 2000]\n        severity: critical", "mustBeBetween: [100, 2000]\n        severity: error"
    )
    path = tmp_path / "rowcount.odcs.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="row_count: severity 'error' maps to 'quarantine'"):
        load_contract(path)


def test_the_sensor_waits_for_a_marker_newer_than_every_file(storage, project, data_root):
    from pipelines.ingest.steps import landing_ready

    land(storage, day_files(), complete=False)
    assert landing_ready(project.dataset.name, DS) is None
    storage.write_bytes(catalog.landing_file(DATASET, DS, "_SUCCESS"), b"")
    assert landing_ready(project.dataset.name, DS) == []  # ready, and small: one task, no shard task
    late = data_root / catalog.landing_file(DATASET, DS, "flights_EWR.csv")
    marker = data_root / catalog.landing_file(DATASET, DS, "_SUCCESS")
    # Written after the marker: 2 s after it, beyond the file system's coarse clock (a time is the later of
    # mtime and ctime, and the marker's rename-time ctime may be a tick after its mtime: 1 ms could tie).
    os.utime(late, ns=(marker.stat().st_mtime_ns + 2_000_000_000,) * 2)
    assert landing_ready(project.dataset.name, DS) is None


# ---- found by review: more ways to hide or over-count records


def test_every_member_of_a_multi_member_gzip_is_read(storage, project):
    import gzip

    files = day_files()
    lines = files["flights_EWR.csv"].split(b"\n")
    half = len(lines) // 2
    files["flights_EWR.csv.gz"] = gzip.compress(b"\n".join(lines[:half]) + b"\n") + gzip.compress(
        b"\n".join(lines[half:])
    )
    del files["flights_EWR.csv"]
    land(storage, files)
    s = validate_partition(project, DS)
    assert s["landed_records"] == 832 and s["validated_rows"] == 832
    # Bytes after the last member that are not gzip make the file unreadable, never silently ignored.
    files["flights_EWR.csv.gz"] += b"trailing junk"
    land(storage, files)
    with pytest.raises(ContractHalt) as exc:
        validate_partition(project, DS)
    assert "not gzip" in exc.value.summary["quarantined_files"][0]["reason"]


def test_a_truncated_gzip_side_file_counts_what_inflated_as_lost(storage, project):
    import gzip

    frames = day_frames()
    side = csv(frames["EWR"].head(130).assign(flight=range(9000, 9130)))
    files = {**day_files(), "corrections.csv.gz": gzip.compress(side)[:-20]}
    land(storage, files)
    with pytest.raises(ContractHalt) as exc:  # 130 of 962 records cannot be read: far above 5 %
        validate_partition(project, DS)
    assert exc.value.summary["lost_records"] >= 100


@pytest.mark.parametrize("odd", [b"\x0c", "\u2028".encode(), b"\x1c", "\x85".encode()])
def test_characters_python_calls_line_breaks_are_not_csv_line_breaks(storage, project, odd):
    files = day_files()
    lines = files["flights_EWR.csv"].split(b"\n")
    lines[5] += b",extra" + odd + b"field"  # one field too many: a malformed record of one line
    files["flights_EWR.csv"] = b"\n".join(lines)
    land(storage, files)
    s = validate_partition(project, DS)
    assert s["landed_records"] == 832 and s["quarantined_records"] == 1
    assert_records_reconciled(storage, s)


def test_a_redelivery_copied_with_its_old_times_is_still_newer_than_the_marker(storage, project, data_root):
    import shutil

    land(storage, day_files())
    validate_partition(project, DS)
    staged = data_root.parent / "staged_EWR.csv"
    staged.write_bytes(csv(day_frames()["EWR"].head(200)))
    old = 1_000_000_000_000_000_000
    os.utime(staged, ns=(old, old))  # exported long before the marker
    shutil.copy2(staged, data_root / catalog.landing_file(DATASET, DS, "flights_EWR.csv"))  # cp -p
    with pytest.raises(NothingLanded, match="written after the _SUCCESS marker"):
        validate_partition(project, DS)


def test_a_ready_marker_named_like_data_is_not_data(storage, project):
    ingest = project.dataset.ingest.model_copy(update={"ready_marker": "READY.csv"})
    marked = project.dataset.model_copy(update={"ingest": ingest})
    storage.delete_prefix(catalog.landing_dir(DATASET, DS))
    for name, data in day_files().items():
        storage.write_bytes(catalog.landing_file(DATASET, DS, name), data)
    storage.write_bytes(catalog.landing_file(DATASET, DS, "READY.csv"), b"")
    s = validate_partition(marked, DS)
    assert s["landed_files"] == 3 and s["empty_files"] == [] and s["status"] == "published"


def test_a_file_removed_while_the_delivery_is_read_writes_nothing(storage, project, monkeypatch):
    land(storage, day_files())
    import pipelines.ingest.batches as batches

    real = batches.FileReader.__iter__

    def upstream_removes(reader):
        if reader.name == "flights_JFK.csv":
            reader.storage.delete(reader.key)
        return real(reader)

    monkeypatch.setattr(batches.FileReader, "__iter__", upstream_removes)
    with pytest.raises(DeliveryChanged, match="removed"):
        validate_partition(project, DS)
    assert not storage.list(catalog.validated_dir(DATASET, DS))


def test_an_output_folder_out_of_the_root_is_refused_before_any_write(storage, project, data_root, tmp_path):
    land(storage, day_files())
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    link = data_root / catalog.validated_dir(DATASET, DS)
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(outside, target_is_directory=True)
    with pytest.raises(ConfigError, match="outside the storage root"):
        validate_partition(project, DS)
    assert not (data_root / catalog.quarantine_dir(DATASET, DS)).exists()
    assert list(outside.iterdir()) == []


def test_a_republish_never_leaves_new_quarantine_beside_old_validated_rows(storage, project, monkeypatch):
    land(storage, day_files())
    validate_partition(project, DS)
    frames = day_frames()
    frames["EWR"].loc[frames["EWR"].index[:5], "dest"] = "XXX"
    land(storage, {f"flights_{o}.csv": csv(f) for o, f in frames.items()})
    real = storage.upload

    def disk_full_on_validated(key, path):
        if key == catalog.validated_file(DATASET, DS):
            raise OSError(28, "No space left on device")
        return real(key, path)

    monkeypatch.setattr(storage, "upload", disk_full_on_validated)
    with pytest.raises(OSError):
        validate_partition(project, DS, storage=storage)
    assert not storage.exists(catalog.validated_file(DATASET, DS))  # no mix of the two deliveries


def test_a_parquet_footer_that_undercounts_its_rows_never_breaks_the_accounting(storage, project):
    import struct

    table = pq.read_table(io.BytesIO(_parquet(day_frames()["EWR"])))
    buf = io.BytesIO()
    pq.write_table(table, buf)
    data, n = buf.getvalue(), table.num_rows

    def zigzag(v: int) -> bytes:
        v, out = (v << 1) ^ (v >> 63), b""
        while True:
            b, v = v & 0x7F, v >> 7
            if not v:
                return out + bytes([b])
            out += bytes([b | 0x80])

    mlen = struct.unpack("<I", data[-8:-4])[0]
    meta = data[-8 - mlen : -8]
    old, new = b"\x16" + zigzag(n), b"\x16" + zigzag(n - 50)
    assert len(old) == len(new) and old in meta
    lying = data[: -8 - mlen] + meta.replace(old, new, 1) + data[-8:]
    assert pq.ParquetFile(pa.BufferReader(lying)).metadata.num_rows == n - 50
    files = {**day_files(), "flights_EWR.parquet": lying}
    del files["flights_EWR.csv"]
    land(storage, files)
    s = validate_partition(project, DS)
    assert s["landed_records"] == 832  # what was read, never less
    assert_records_reconciled(storage, s)


def test_contract_rules_that_could_never_work_are_refused_on_load(tmp_path):
    text = CONTRACT.read_text()
    cases = {
        "pattern on an integer": text.replace(
            "{id: flight_positive, metric: invalidValues, arguments: {minimum: 1}",
            '{id: flight_positive, metric: invalidValues, arguments: {pattern: "^[0-9]+$"}',
        ),
        "a bound beyond a float": text.replace("mustBeBetween: [100, 2000]", f"mustBeBetween: [100, {10**400}]"),
    }
    for case, variant in cases.items():
        assert variant != text, case
        path = tmp_path / "variant.odcs.yaml"
        path.write_text(variant)
        with pytest.raises(ConfigError, match=r"pattern needs a string column|expected a finite number"):
            load_contract(path)


def test_validation_writes_under_the_partitions_own_lock_even_when_no_project_reads_the_dataset(
    storage, tmp_path, monkeypatch
):
    """A dataset declared before any project reads it (new-project's first step) has no scores lock to
    take: its validation still writes under the day's own lock, so two validations of a day never interleave."""
    import shutil
    import threading

    from pipelines.core import locks
    from pipelines.core.config import load_dataset
    from pipelines.core.locks import LockBusy
    from pipelines.core.settings import PROJECT_ROOT
    from pipelines.core.withdrawal import models_on
    from pipelines.ingest import validation

    configs = tmp_path / "configs"
    shutil.copytree(PROJECT_ROOT / "configs" / "profiles", configs / "profiles")
    shutil.copytree(PROJECT_ROOT / "configs" / "datasets", configs / "datasets")
    monkeypatch.setenv("PIPELINES_CONFIG_DIR", str(configs))
    assert models_on(DATASET) == []  # nobody reads it yet
    land(storage, day_files())
    seen: list[str] = []
    real = validation._publish

    def publish(*args, **kwargs):
        def contend() -> None:  # another writer of the same day, in another thread
            try:
                with locks.validated_partition(storage, DATASET, DS, timeout=0.3):
                    seen.append("acquired")
            except LockBusy:
                seen.append("busy")

        t = threading.Thread(target=contend)
        t.start()
        t.join()
        return real(*args, **kwargs)

    monkeypatch.setattr(validation, "_publish", publish)
    assert validate_partition(load_dataset(DATASET), DS)["status"] == "published"
    assert seen == ["busy"]
