"""S3Storage against a real S3-protocol server (moto in server mode, a subprocess on 127.0.0.1)."""

from __future__ import annotations

import hashlib
import json
import time
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.core import catalog
from pipelines.core.errors import ConfigError, ContractHalt, MissingInput
from pipelines.core.storage import ObjectInfo, S3Storage, get_storage

pytestmark = pytest.mark.integration

KEY = "validated/flights/ds=2013-01-01/part-00000.parquet"


def _bucket_prefix(root: str) -> tuple[str, str]:
    bucket, _, prefix = root[len("s3://") :].partition("/")
    return bucket, prefix


def _raw_keys(client, bucket: str, prefix: str = "") -> list[str]:
    """Every key in the bucket under prefix, read with the raw client (not S3Storage)."""
    keys = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.extend(obj["Key"] for obj in page.get("Contents", []))
    return sorted(keys)


def _raw_get(client, root: str, key: str) -> bytes:
    bucket, prefix = _bucket_prefix(root)
    return client.get_object(Bucket=bucket, Key=f"{prefix}/{key}")["Body"].read()


@pytest.fixture
def s3(s3_root) -> S3Storage:
    storage = get_storage()
    assert isinstance(storage, S3Storage)
    return storage


def test_get_storage_picks_s3_for_an_s3_root(s3_root, s3_env):
    from pipelines.core.settings import get_settings

    settings = get_settings()
    assert settings.is_s3
    assert settings.data_root == s3_root
    assert settings.aws_endpoint_url == s3_env
    storage = get_storage()
    assert isinstance(storage, S3Storage)
    assert storage.root == s3_root
    assert (storage.bucket, storage.prefix) == _bucket_prefix(s3_root)


def test_write_read_exists_size(s3, s3_root, s3_client):
    assert not s3.exists(KEY)
    uri = s3.write_bytes(KEY, b"hello")
    assert uri == s3.uri(KEY) == f"{s3_root}/{KEY}"
    assert s3.read_bytes(KEY) == b"hello"
    assert s3.exists(KEY)
    assert s3.size(KEY) == 5
    assert not s3.exists("validated/flights/ds=2013-01-01")  # a "folder" is not an object
    # The object really is at <bucket>/<prefix>/<key>, nothing else was written.
    bucket, prefix = _bucket_prefix(s3_root)
    assert _raw_keys(s3_client, bucket) == [f"{prefix}/{KEY}"]
    assert _raw_get(s3_client, s3_root, KEY) == b"hello"


def test_write_replaces_an_existing_object_whole(s3):
    s3.write_bytes(KEY, b"a much longer original payload " * 100)
    s3.write_bytes(KEY, b"short")
    assert s3.read_bytes(KEY) == b"short"
    assert s3.size(KEY) == 5
    assert s3.list("validated") == [KEY]


def test_read_missing_key_raises_missing_input(s3):
    with pytest.raises(MissingInput, match=r"not found: s3://"):
        s3.read_bytes("landing/flights/ds=2013-01-01/nope.csv")
    with pytest.raises(MissingInput):
        s3.read_json("reports/datasets/flights/ds=2013-01-01/validation.json")
    with pytest.raises(MissingInput):
        s3.read_parquet(KEY)


def test_unsafe_keys_are_rejected_before_any_request(s3, s3_root, s3_client):
    for key in ("../escape", "/abs", "a//b", "a/../../b", "a b"):
        with pytest.raises(ConfigError):
            s3.write_bytes(key, b"x")
        with pytest.raises(ConfigError):
            s3.read_bytes(key)
        with pytest.raises(ConfigError):
            s3.list(key)
        with pytest.raises(ConfigError):
            s3.delete_prefix(key)
    assert _raw_keys(s3_client, _bucket_prefix(s3_root)[0]) == []


def test_list_is_recursive_sorted_relative_and_stays_inside_the_root(s3, s3_root, s3_client):
    keys = [
        "landing/flights/ds=2013-01-02/b.csv",
        "landing/flights/ds=2013-01-01/z.csv",
        "landing/flights/ds=2013-01-01/a.csv",
        "landing/flights/ds=2013-01-01/sub/deeper/c.csv",
        "landing/flights/ds=2013-01-01/B.csv",
        "landing/other/ds=2013-01-01/x.csv",
        "validated/flights/ds=2013-01-01/part-00000.parquet",
    ]
    for k in keys:
        s3.write_bytes(k, k.encode())
    # Objects outside the root prefix (same bucket) must never show up.
    bucket, prefix = _bucket_prefix(s3_root)
    s3_client.put_object(Bucket=bucket, Key=f"{prefix}x/landing/flights/ds=2013-01-01/foreign.csv", Body=b"no")
    s3_client.put_object(Bucket=bucket, Key="landing/flights/ds=2013-01-01/foreign.csv", Body=b"no")

    flights = sorted(k for k in keys if k.startswith("landing/flights/"))
    assert s3.list("landing/flights") == flights
    assert s3.list("landing/flights/") == flights
    assert s3.list("landing") == sorted(k for k in keys if k.startswith("landing/"))
    assert s3.list("landing/flights/ds=2013-01-01") == [
        "landing/flights/ds=2013-01-01/B.csv",
        "landing/flights/ds=2013-01-01/a.csv",
        "landing/flights/ds=2013-01-01/sub/deeper/c.csv",
        "landing/flights/ds=2013-01-01/z.csv",
    ]
    assert all(s3.read_bytes(k) == k.encode() for k in s3.list("landing"))
    assert s3.list("scores") == []
    assert s3.list(keys[-1]) == []  # an object is not a folder


def test_list_is_a_folder_prefix_not_a_string_prefix(s3):
    s3.write_bytes("a/b/x", b"1")
    s3.write_bytes("a/bc/y", b"2")
    assert s3.list("a/b") == ["a/b/x"]
    assert s3.delete_prefix("a/b") == 1
    assert s3.list("a") == ["a/bc/y"]


def test_list_and_delete_prefix_paginate_past_1000_objects(s3, s3_root, s3_client):
    # S3 (and moto) return at most 1,000 keys per ListObjectsV2 page and
    # DeleteObjects takes at most 1,000 keys: 1,050 objects need two of each.
    part = "landing/flights/ds=2013-01-01"
    keys = [f"{part}/f{i:05d}.csv" for i in range(1050)]
    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(lambda k: s3.write_bytes(k, b"x"), keys))
    s3.write_bytes("landing/flights/ds=2013-01-02/keep.csv", b"keep")
    bucket, prefix = _bucket_prefix(s3_root)
    first_page = s3_client.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/{part}/")
    assert first_page["IsTruncated"], "the server must page, or this test exercises nothing"

    assert s3.list(part) == keys
    assert [info.key for info in s3.list_info(part)] == keys
    assert s3.delete_prefix(part) == 1050
    assert s3.list(part) == []
    assert s3.list("landing") == ["landing/flights/ds=2013-01-02/keep.csv"]
    assert time.monotonic() - t0 < 120


def test_delete_prefix_of_missing_prefix_is_zero(s3):
    assert s3.delete_prefix("validated/flights/ds=2013-01-01") == 0


def test_parquet_and_json_round_trip(s3, s3_root, s3_client):
    table = pa.table(
        {
            "i": pa.array([1, None, 3], pa.int64()),
            "s": pa.array(["a", None, "ü"], pa.string()),
            "l": pa.array([["r1"], [], ["r1", "r2"]], pa.list_(pa.string())),
        }
    )
    assert s3.write_parquet(KEY, table) == f"{s3_root}/{KEY}"
    assert s3.read_parquet(KEY).equals(table)
    raw = pq.read_table(pa.BufferReader(_raw_get(s3_client, s3_root, KEY)))
    assert raw.equals(table)
    s3.write_json("reports/datasets/flights/ds=2013-01-01/validation.json", {"b": 1, "a": [1]})
    assert s3.read_json("reports/datasets/flights/ds=2013-01-01/validation.json") == {"a": [1], "b": 1}


def test_bucket_root_without_prefix(s3_root, s3_client, s3_env):
    bucket, _ = _bucket_prefix(s3_root)
    storage = S3Storage(f"s3://{bucket}", endpoint_url=s3_env)
    storage.write_bytes("landing/flights/ds=2013-01-01/a.csv", b"a")
    assert storage.uri("landing/flights/ds=2013-01-01/a.csv") == f"s3://{bucket}/landing/flights/ds=2013-01-01/a.csv"
    assert storage.list("landing") == ["landing/flights/ds=2013-01-01/a.csv"]
    assert _raw_keys(s3_client, bucket) == ["landing/flights/ds=2013-01-01/a.csv"]
    assert storage.delete_prefix("landing") == 1


# --- end to end: seed the demo with faults, validate each day on S3 -------------------------------------------------


def _parquet_rows(client, root: str, key: str) -> int:
    return pq.read_metadata(pa.BufferReader(_raw_get(client, root, key))).num_rows


def test_seed_and_validate_on_s3_reconciles(s3_root, s3_client):
    from pipelines.core.config import load_project
    from pipelines.core.contracts import FILE_UNREADABLE, QUARANTINE_RATE
    from pipelines.ingest.validation import validate_partition
    from pipelines_ops.demo_data import seed_demo

    project = load_project("flights_delay")
    storage = get_storage()
    assert isinstance(storage, S3Storage)
    bucket, prefix = _bucket_prefix(s3_root)

    dataset = project.dataset.name
    seeded = seed_demo(project, "2013-01-01", "2013-01-03", inject_faults=True)
    assert seeded["landing"] == f"{s3_root}/{catalog.landing_table(dataset)}"
    days = {d["ds"]: d for d in seeded["days"]}
    assert [days[ds]["fault"] for ds in sorted(days)] == [
        "unknown_airports_and_duplicate_keys",
        "unreadable_file",
        "missing_column",
    ]
    # A previous publish of the day that will halt: a halt must remove it.
    storage.write_bytes(catalog.validated_file(dataset, "2013-01-03"), b"stale")
    storage.write_bytes(catalog.quarantine_rows(dataset, "2013-01-03"), b"stale")

    summaries = {}
    for ds in ("2013-01-01", "2013-01-02"):
        summaries[ds] = s = validate_partition(project, ds)
        assert s["status"] == "published", s
        assert s["landed_rows"] == days[ds]["rows"]
        assert s["landed_rows"] == s["validated_rows"] + s["quarantined_rows"]

        # Read everything back from the server, not from the summary.
        v_rows = _parquet_rows(s3_client, s3_root, catalog.validated_file(dataset, ds))
        q_table = pq.read_table(pa.BufferReader(_raw_get(s3_client, s3_root, catalog.quarantine_rows(dataset, ds))))
        report = json.loads(_raw_get(s3_client, s3_root, catalog.validation_report(dataset, ds)))
        rs = report["summary"]
        assert rs["status"] == "published"
        assert v_rows == rs["validated_rows"] == s["validated_rows"]
        assert q_table.num_rows == rs["quarantined_rows"] == s["quarantined_rows"]
        assert rs["landed_rows"] == v_rows + q_table.num_rows == days[ds]["rows"]
        assert s["validated"] == f"{s3_root}/{catalog.validated_file(dataset, ds)}"
        assert s["report"] == f"{s3_root}/{catalog.validation_report(dataset, ds)}"
        assert s["report"] == f"{s3_root}/reports/datasets/flights/ds={ds}/validation.json"
        # Every quarantined row says why.
        assert all(ids for ids in q_table.column("_rule_ids").to_pylist())
        assert all(reasons for reasons in q_table.column("_reasons").to_pylist())
        assert storage.exists(catalog.validation_html(dataset, ds))

    day1 = summaries["2013-01-01"]
    assert day1["quarantined_rows"] > 0
    assert day1["quarantined_files"] == []

    # 2013-01-02: the binary file is quarantined whole, byte for byte; the rows all publish.
    day2 = summaries["2013-01-02"]
    assert [f["file"] for f in day2["quarantined_files"]] == ["flights_corrections.csv"]
    assert day2["quarantined_files"][0]["rule"] == FILE_UNREADABLE
    assert FILE_UNREADABLE in day2["rules_failed"]
    landed_bad = _raw_get(s3_client, s3_root, catalog.landing_file(dataset, "2013-01-02", "flights_corrections.csv"))
    kept = catalog.quarantine_file(dataset, "2013-01-02", "flights_corrections.csv")
    assert storage.list(catalog.quarantine_files_dir(dataset, "2013-01-02")) == [kept]
    assert _raw_get(s3_client, s3_root, kept) == landed_bad
    files_json = json.loads(_raw_get(s3_client, s3_root, catalog.quarantine_index(dataset, "2013-01-02")))
    assert [f["file"] for f in files_json] == ["flights_corrections.csv"]
    assert files_json[0]["bytes"] == len(landed_bad)

    # 2013-01-03 halts: a report explains it and nothing of the day is left downstream.
    with pytest.raises(ContractHalt) as info:
        validate_partition(project, "2013-01-03")
    halt = info.value
    assert halt.ds == "2013-01-03"
    assert QUARANTINE_RATE in halt.rules
    assert halt.report == f"{s3_root}/{catalog.validation_report(dataset, '2013-01-03')}"
    report = json.loads(_raw_get(s3_client, s3_root, catalog.validation_report(dataset, "2013-01-03")))
    assert report["summary"]["status"] == "halted"
    assert report["summary"]["validated_rows"] == report["summary"]["quarantined_rows"] == 0
    assert report["summary"]["landed_rows"] == days["2013-01-03"]["rows"]
    for folder in (catalog.validated_dir(dataset, "2013-01-03"), catalog.quarantine_dir(dataset, "2013-01-03")):
        assert storage.list(folder) == []
        assert _raw_keys(s3_client, bucket, f"{prefix}/{folder}/") == []
    assert catalog.validated_partitions(storage, dataset) == ["2013-01-01", "2013-01-02"]

    # Everything the pipeline wrote stayed inside the root prefix.
    assert all(k.startswith(f"{prefix}/") for k in _raw_keys(s3_client, bucket))


def test_delete_removes_one_object_only(s3, s3_root, s3_client):
    s3.write_bytes("scores/m/ds=2013-01-01/a.json", b"1")
    s3.write_bytes("scores/m/ds=2013-01-01/ab.json", b"2")
    s3.delete("scores/m/ds=2013-01-01/a.json")
    bucket, prefix = _bucket_prefix(s3_root)
    assert _raw_keys(s3_client, bucket, prefix) == [f"{prefix}/scores/m/ds=2013-01-01/ab.json"]
    s3.delete("scores/m/ds=2013-01-01/a.json")  # already gone: no error


def test_key_of_and_local_copy_on_s3(s3, s3_root, tmp_path):
    """The generic local copy: a streamed download into a temp folder, gone when the block ends."""
    from pathlib import Path

    s3.write_bytes(KEY, b"hello")
    assert s3.key_of(s3.uri(KEY)) == KEY
    assert s3.key_of(f"{s3_root}x/{KEY}") is None
    with s3.local_copy(KEY) as path:
        assert Path(path).name == "part-00000.parquet" and Path(path).read_bytes() == b"hello"
    assert not Path(path).exists()
    assert s3.read_bytes(KEY) == b"hello"  # the object stays
    with pytest.raises(MissingInput), s3.local_copy("validated/flights/ds=2013-01-02/part-00000.parquet"):
        pass


def test_landed_files_on_s3_skip_folder_markers_metadata_and_in_flight_output(s3, s3_root, s3_client):
    ds = "2013-01-01"
    for name in ("flights_EWR.csv", "sub/x.csv"):
        s3.write_bytes(catalog.landing_file("flights", ds, name), b"a,b\n")
    s3.write_bytes(catalog.landing_file("flights", ds, "_SUCCESS"), b"")
    s3.write_bytes(catalog.landing_file("flights", ds, "_temporary/0/part-0.csv"), b"half")
    bucket, prefix = _bucket_prefix(s3_root)
    folder = f"{prefix}/{catalog.landing_dir('flights', ds)}/sub/"  # a console's "folder": no key of ours
    s3_client.put_object(Bucket=bucket, Key=folder, Body=b"")
    hidden = f"{prefix}/{catalog.landing_dir('flights', ds)}/.flights_EWR.csv.crc"
    s3_client.put_object(Bucket=bucket, Key=hidden, Body=b"crc")
    assert catalog.landed_files(s3, "flights", ds) == [
        catalog.Landed(catalog.landing_file("flights", ds, "flights_EWR.csv"), "flights_EWR.csv"),
        catalog.Landed(catalog.landing_file("flights", ds, "sub/x.csv"), "sub/x.csv"),
    ]


def _count_calls(storage: S3Storage, operation: str) -> list[str]:
    """Record each ``operation`` request the storage's client makes (the list grows as they happen)."""
    calls: list[str] = []
    storage.client.meta.events.register(f"before-call.s3.{operation}", lambda **kw: calls.append(operation))
    return calls


def test_list_info_and_info_on_s3(s3, s3_root, s3_client):
    objects = {
        "landing/flights/ds=2013-01-01/z.csv": b"zz",
        "landing/flights/ds=2013-01-01/_SUCCESS": b"",
        "landing/flights/ds=2013-01-01/a.csv": b"a" * 1000,
        "landing/flights/ds=2013-01-01/sub/b.csv": b"bbb",
    }
    for key, data in objects.items():
        s3.write_bytes(key, data)
    bucket, prefix = _bucket_prefix(s3_root)
    s3_client.put_object(Bucket=bucket, Key="landing/flights/ds=2013-01-01/foreign.csv", Body=b"no")  # not ours
    heads, lists = _count_calls(s3, "HeadObject"), _count_calls(s3, "ListObjectsV2")

    infos = s3.list_info("landing/flights")
    assert (heads, lists) == ([], ["ListObjectsV2"]), "list_info must read the listing, not HEAD each object"
    assert [i.key for i in infos] == sorted(objects) == s3.list("landing/flights")
    now = time.time()
    for info in infos:
        data = objects[info.key]
        assert info.size == len(data)
        assert info.etag == hashlib.md5(data).hexdigest()  # a single PUT: the ETag is the MD5, quotes stripped
        assert abs(info.modified - now) < 60
        assert info.modified == int(info.modified)  # whole seconds, as HEAD reports them
        raw = s3_client.head_object(Bucket=bucket, Key=f"{prefix}/{info.key}")
        assert info.etag == raw["ETag"].strip('"') and info.size == raw["ContentLength"]
        assert s3.info(info.key) == info  # HEAD and the listing agree
    assert len(heads) == len(objects)

    with pytest.raises(MissingInput, match=r"not found: s3://"):
        s3.info("landing/flights/ds=2013-01-01/nope.csv")
    with pytest.raises(MissingInput):
        s3.info("landing/flights/ds=2013-01-01")  # a "folder" is not an object
    with pytest.raises(ConfigError):
        s3.info("../escape")
    assert s3.list_info("scores") == []


def test_info_changes_when_an_object_is_rewritten_on_s3(s3):
    key = "landing/flights/ds=2013-01-01/_SUCCESS"
    s3.write_bytes(key, b"first")
    first = s3.info(key)
    s3.write_bytes(key, b"second, longer")
    second = s3.info(key)
    assert second.etag != first.etag
    assert second.size == len(b"second, longer")
    assert second.modified >= first.modified
    assert s3.list_info("landing") == [second]
    assert isinstance(second, ObjectInfo)
