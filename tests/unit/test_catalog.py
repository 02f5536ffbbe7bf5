"""The catalog: the only place storage keys are built and parsed (no server needed)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pytest

from pipelines.core import catalog
from pipelines.core.catalog import Landed
from pipelines.core.errors import ConfigError, InvalidPartitionKey, MissingInput, NoValidatedPartition
from pipelines.core.storage import LocalStorage, check_key

DS = "2013-01-01"
PLAN = "0123456789abcdef"
OTHER_PLAN = "fedcba9876543210"


@pytest.fixture
def local(tmp_path) -> LocalStorage:
    return LocalStorage(tmp_path)


def _touch(storage: LocalStorage, key: str, data: bytes = b"x") -> None:
    """Write a file under the root by its path, bypassing key validation (foreign names, hidden files)."""
    path = Path(storage.root, *key.split("/"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


# --- the layout -----------------------------------------------------------------------------------------------------


def test_dataset_keys_are_hive_paths_under_the_dataset():
    assert catalog.landing_table("flights") == "landing/flights"
    assert catalog.landing_dir("flights", DS) == "landing/flights/ds=2013-01-01"
    assert catalog.landing_file("flights", DS, "flights_JFK.csv") == "landing/flights/ds=2013-01-01/flights_JFK.csv"
    assert catalog.landing_file("flights", DS, "sub/x.csv") == "landing/flights/ds=2013-01-01/sub/x.csv"
    assert catalog.validated_table("flights") == "validated/flights"
    assert catalog.validated_dir("flights", DS) == "validated/flights/ds=2013-01-01"
    assert catalog.validated_file("flights", DS) == f"validated/flights/ds=2013-01-01/{catalog.VALIDATED_FILE}"
    assert catalog.VALIDATED_FILE == "part-00000.parquet"
    assert catalog.quarantine_dir("flights", "2013-01-02") == "quarantine/flights/ds=2013-01-02"
    assert catalog.quarantine_rows("flights", "2013-01-02") == "quarantine/flights/ds=2013-01-02/rows.parquet"
    assert catalog.quarantine_files_dir("flights", "2013-01-02") == "quarantine/flights/ds=2013-01-02/files"
    assert catalog.quarantine_file("flights", "2013-01-02", "x.csv") == "quarantine/flights/ds=2013-01-02/files/x.csv"
    assert catalog.quarantine_index("flights", "2013-01-02") == "quarantine/flights/ds=2013-01-02/_files.json"
    assert catalog.validation_reports("flights") == "reports/datasets/flights"
    assert catalog.validation_report("flights", dt.date(2013, 12, 31)) == (
        "reports/datasets/flights/ds=2013-12-31/validation.json"
    )
    assert catalog.validation_html("flights", DS) == "reports/datasets/flights/ds=2013-01-01/validation.html"


def test_model_keys_are_hive_paths_under_the_model():
    m = "flights_delay"
    assert catalog.training_dir(m, "2013-01-31") == "training/flights_delay/ds=2013-01-31"
    assert catalog.training_file(m, "2013-01-31", catalog.TRAIN_FILE) == (
        "training/flights_delay/ds=2013-01-31/train.parquet"
    )
    assert catalog.training_file(m, "2013-01-31", catalog.HOLDOUT_FILE) == (
        "training/flights_delay/ds=2013-01-31/holdout.parquet"
    )
    assert catalog.training_set_record(m, "2013-01-31") == "training/flights_delay/ds=2013-01-31/_training_set.json"
    assert catalog.drift_reports(m) == "reports/models/flights_delay"
    assert catalog.drift_summary(m, DS) == "reports/models/flights_delay/ds=2013-01-01/drift.json"
    assert catalog.drift_html(m, DS, "features") == "reports/models/flights_delay/ds=2013-01-01/drift.html"
    assert catalog.drift_html(m, DS, "scores") == "reports/models/flights_delay/ds=2013-01-01/drift_scores.html"
    assert catalog.checkpoint_dir(m, DS) == "checkpoints/flights_delay/ds=2013-01-01"
    assert catalog.scoring_plan(m, DS) == "checkpoints/flights_delay/ds=2013-01-01/plan.json"
    assert catalog.plan_dir(m, DS, PLAN) == f"checkpoints/flights_delay/ds=2013-01-01/{PLAN}"
    assert catalog.chunk_data(m, DS, PLAN, 3) == f"checkpoints/flights_delay/ds=2013-01-01/{PLAN}/chunk-00003.arrow"
    assert catalog.chunk_marker(m, DS, PLAN, 12) == f"checkpoints/flights_delay/ds=2013-01-01/{PLAN}/chunk-00012.json"
    assert catalog.scores_table(m) == "scores/flights_delay"
    assert catalog.scores_file(m, DS) == "scores/flights_delay/ds=2013-01-01/part-00000.parquet"
    assert catalog.scores_manifest(m, DS) == "scores/flights_delay/ds=2013-01-01/_manifest.json"
    assert catalog.parquet_glob(catalog.scores_table(m)) == "scores/flights_delay/ds=*/*.parquet"


def test_partition_keys_are_canonical_whatever_form_the_date_takes():
    as_date = catalog.validated_file("flights", dt.date(2013, 1, 1))
    as_datetime = catalog.validated_file("flights", dt.datetime(2013, 1, 1, 23, 59))
    assert as_date == as_datetime == catalog.validated_file("flights", DS)


def test_every_artifact_lives_in_a_known_zone_under_its_owner():
    keys = [a.key for a in catalog.ARTIFACTS]
    assert len(set(keys)) == len(keys)
    for a in catalog.ARTIFACTS:
        assert a.owner in ("dataset", "model")
        zone, *rest = a.key.split("/")
        assert zone in catalog.ZONES, a.key
        owner_at = rest.index(a.owner)
        assert rest[:owner_at] in ([], ["datasets"] if a.owner == "dataset" else ["models"]), a.key
        assert a.key.rstrip(".").rstrip("/") == check_key(a.key.rstrip(".").rstrip("/"))
    storage_table = catalog.markdown_table().split("\n\n")[0].splitlines()  # the first table: storage keys
    assert storage_table[:2] == ["| owner | key | what |", "|---|---|---|"]
    assert len(storage_table) == 2 + len(catalog.ARTIFACTS)
    table = "\n".join(storage_table)
    assert "`reports/datasets/<dataset>/ds=YYYY-MM-DD/validation.json`" in table
    assert "`checkpoints/<model>/ds=YYYY-MM-DD/<plan>/chunk-<i>.arrow`" in table


# --- negative cases: nothing leaves its folder ----------------------------------------------------------------------

NAMED = [
    pytest.param(lambda n: catalog.landing_table(n), id="landing_table"),
    pytest.param(lambda n: catalog.landing_dir(n, DS), id="landing_dir"),
    pytest.param(lambda n: catalog.landing_file(n, DS, "x.csv"), id="landing_file"),
    pytest.param(lambda n: catalog.validated_table(n), id="validated_table"),
    pytest.param(lambda n: catalog.validated_dir(n, DS), id="validated_dir"),
    pytest.param(lambda n: catalog.validated_file(n, DS), id="validated_file"),
    pytest.param(lambda n: catalog.quarantine_rows(n, DS), id="quarantine_rows"),
    pytest.param(lambda n: catalog.quarantine_file(n, DS, "x.csv"), id="quarantine_file"),
    pytest.param(lambda n: catalog.validation_reports(n), id="validation_reports"),
    pytest.param(lambda n: catalog.validation_report(n, DS), id="validation_report"),
    pytest.param(lambda n: catalog.training_set_record(n, DS), id="training_set_record"),
    pytest.param(lambda n: catalog.drift_reports(n), id="drift_reports"),
    pytest.param(lambda n: catalog.drift_summary(n, DS), id="drift_summary"),
    pytest.param(lambda n: catalog.scoring_plan(n, DS), id="scoring_plan"),
    pytest.param(lambda n: catalog.chunk_marker(n, DS, PLAN, 0), id="chunk_marker"),
    pytest.param(lambda n: catalog.scores_table(n), id="scores_table"),
    pytest.param(lambda n: catalog.scores_manifest(n, DS), id="scores_manifest"),
]


@pytest.mark.parametrize(
    "name",
    [
        "",
        "Flights",
        "A",
        "1flights",
        "_flights",
        "flights-x",
        "../flights",
        "../x",
        "a/b",
        "a b",
        "x" * 64,
        "flights\n",
        None,
    ],
)
@pytest.mark.parametrize("build", NAMED)
def test_bad_dataset_or_model_names_are_rejected(build, name):
    with pytest.raises(ConfigError, match="name"):
        build(name)


DATED = [
    pytest.param(lambda ds: catalog.landing_dir("flights", ds), id="landing_dir"),
    pytest.param(lambda ds: catalog.landing_file("flights", ds, "x.csv"), id="landing_file"),
    pytest.param(lambda ds: catalog.validated_dir("flights", ds), id="validated_dir"),
    pytest.param(lambda ds: catalog.validated_file("flights", ds), id="validated_file"),
    pytest.param(lambda ds: catalog.quarantine_file("flights", ds, "x.csv"), id="quarantine_file"),
    pytest.param(lambda ds: catalog.validation_report("flights", ds), id="validation_report"),
    pytest.param(lambda ds: catalog.training_dir("flights_delay", ds), id="training_dir"),
    pytest.param(lambda ds: catalog.drift_summary("flights_delay", ds), id="drift_summary"),
    pytest.param(lambda ds: catalog.scoring_plan("flights_delay", ds), id="scoring_plan"),
    pytest.param(lambda ds: catalog.chunk_data("flights_delay", ds, PLAN, 0), id="chunk_data"),
    pytest.param(lambda ds: catalog.scores_file("flights_delay", ds), id="scores_file"),
]


@pytest.mark.parametrize(
    "ds",
    [
        "2013-1-1",
        "2013-01-1",
        "2013-02-30",
        "2013-13-01",
        "20130101",
        "2013/01/01",
        "../2013-01-01",
        "2013-01-01/../../etc",
        "2013-01-01/",
        " 2013-01-01",
        "2013-01-01T00:00:00",
        "",
        "ds=2013-01-01",
    ],
)
@pytest.mark.parametrize("build", DATED)
def test_non_date_partition_keys_are_rejected(build, ds):
    with pytest.raises(InvalidPartitionKey):
        build(ds)


@pytest.mark.parametrize("part", ["..", "../x", "/abs", "a//b", "a b", ".x", "x/../../y", "sub/.hidden"])
@pytest.mark.parametrize(
    "build",
    [
        pytest.param(lambda p: catalog.landing_file("flights", DS, p), id="landing_file"),
        pytest.param(lambda p: catalog.quarantine_file("flights", DS, p), id="quarantine_file"),
    ],
)
def test_unsafe_trailing_parts_are_rejected(build, part):
    with pytest.raises(ConfigError):
        build(part)


@pytest.mark.parametrize("name", ["", "train", "model.pkl", "../train.parquet", "x/train.parquet"])
def test_a_training_set_holds_only_its_two_files(name):
    with pytest.raises(ConfigError, match="training-set file"):
        catalog.training_file("flights_delay", DS, name)


@pytest.mark.parametrize("part", ["", "feature", "drift", "../features", "html"])
def test_a_drift_check_has_only_its_two_html_reports(part):
    with pytest.raises(ConfigError, match="unknown drift report"):
        catalog.drift_html("flights_delay", DS, part)


@pytest.mark.parametrize(
    "plan_id",
    [
        "",
        "0123456789ABCDEF",  # not lower-case hex
        "0123456789abcde",  # 15 characters
        "0123456789abcdef0",  # 17 characters
        "0123456789abcdeg",
        "../0123456789abc",
        "0123456789abcdef/..",
        "plan.json",
        None,
        0x0123456789ABCDEF,
    ],
)
@pytest.mark.parametrize(
    "build",
    [
        pytest.param(lambda p: catalog.plan_dir("flights_delay", DS, p), id="plan_dir"),
        pytest.param(lambda p: catalog.chunk_data("flights_delay", DS, p, 0), id="chunk_data"),
        pytest.param(lambda p: catalog.chunk_marker("flights_delay", DS, p, 0), id="chunk_marker"),
    ],
)
def test_chunk_keys_reject_a_plan_id_that_is_not_16_hex_characters(build, plan_id):
    with pytest.raises(ConfigError, match="plan id"):
        build(plan_id)


def test_committed_markers_and_plan_ids_reject_a_bad_plan_id_or_name(local):
    with pytest.raises(ConfigError):
        catalog.committed_markers(local, "flights_delay", DS, "../" + PLAN)
    with pytest.raises(ConfigError):
        catalog.plan_ids(local, "../flights_delay", DS)
    with pytest.raises(InvalidPartitionKey):
        catalog.plan_ids(local, "flights_delay", "2013-1-1")


# --- a dataset and a model of the same name -------------------------------------------------------------------------


def test_a_dataset_and_a_model_with_the_same_name_never_share_a_report_key(local):
    name = "flights"
    dataset_reports = [
        catalog.validation_reports(name),
        catalog.validation_report(name, DS),
        catalog.validation_html(name, DS),
    ]
    model_reports = [
        catalog.drift_reports(name),
        catalog.drift_summary(name, DS),
        catalog.drift_html(name, DS, "features"),
        catalog.drift_html(name, DS, "scores"),
    ]
    assert not set(dataset_reports) & set(model_reports)
    for d in dataset_reports:
        for m in model_reports:
            assert not d.startswith(m + "/") and not m.startswith(d + "/"), (d, m)
    # Every key either owner can have, for one name and one day: no two alike.
    every = [
        *dataset_reports,
        *model_reports,
        catalog.validated_file(name, DS),
        catalog.quarantine_rows(name, DS),
        catalog.training_set_record(name, DS),
        catalog.scoring_plan(name, DS),
        catalog.scores_manifest(name, DS),
    ]
    assert len(set(every)) == len(every)

    # Stored side by side, neither is taken for the other.
    local.write_json(catalog.validation_report(name, DS), {"summary": {"status": "published"}})
    local.write_json(catalog.drift_summary(name, "2013-01-02"), {"signal": False})
    assert catalog.drift_checks(local, name) == ["2013-01-02"]
    assert local.list(catalog.validation_reports(name)) == [catalog.validation_report(name, DS)]
    assert local.list(catalog.drift_reports(name)) == [catalog.drift_summary(name, "2013-01-02")]


# --- listing partitions ---------------------------------------------------------------------------------------------


def test_validated_partitions_lists_only_date_folders_holding_the_file(local):
    table = catalog.validated_table("flights")
    for ds in ("2013-01-03", "2013-01-01", "2013-01-02"):
        local.write_bytes(catalog.validated_file("flights", ds), b"PAR1")
    # Not partitions: foreign folder names, non-date ds folders, a folder without the file, a file too deep.
    _touch(local, f"{table}/ds=2013-1-4/{catalog.VALIDATED_FILE}")
    _touch(local, f"{table}/ds=2013-02-30/{catalog.VALIDATED_FILE}")
    _touch(local, f"{table}/dt=2013-01-05/{catalog.VALIDATED_FILE}")
    _touch(local, f"{table}/2013-01-06/{catalog.VALIDATED_FILE}")
    _touch(local, f"{table}/ds=2013-01-07/part-00001.parquet")
    _touch(local, f"{table}/ds=2013-01-08/sub/{catalog.VALIDATED_FILE}")
    _touch(local, f"{table}/ds=2013-01-09 copy/{catalog.VALIDATED_FILE}")
    _touch(local, f"{table}/{catalog.VALIDATED_FILE}")
    _touch(local, f"{table}/.DS_Store")
    # Other datasets and zones are not this table.
    local.write_bytes(catalog.validated_file("other", "2013-01-10"), b"PAR1")
    local.write_bytes(catalog.quarantine_rows("flights", "2013-01-11"), b"PAR1")
    local.write_json(catalog.validation_report("flights", "2013-01-12"), {})

    assert catalog.validated_partitions(local, "flights") == ["2013-01-01", "2013-01-02", "2013-01-03"]
    assert catalog.validated_partitions(local, "other") == ["2013-01-10"]
    assert catalog.validated_partitions(local, "nothing_yet") == []


def test_drift_checks_lists_only_date_folders_holding_a_summary(local):
    reports = catalog.drift_reports("flights_delay")
    for ds in ("2013-07-02", "2013-07-01"):
        local.write_json(catalog.drift_summary("flights_delay", ds), {"signal": True})
    local.write_text(catalog.drift_html("flights_delay", "2013-07-03", "features"), "<p>no summary</p>")
    _touch(local, f"{reports}/ds=2013-7-4/{catalog.DRIFT_SUMMARY_FILE}")
    _touch(local, f"{reports}/ds=2013-07-32/{catalog.DRIFT_SUMMARY_FILE}")
    _touch(local, f"{reports}/latest/{catalog.DRIFT_SUMMARY_FILE}")
    _touch(local, f"{reports}/ds=2013-07-05/old/{catalog.DRIFT_SUMMARY_FILE}")
    _touch(local, f"{reports}/{catalog.DRIFT_SUMMARY_FILE}")
    local.write_json(catalog.drift_summary("other_model", "2013-07-06"), {})

    assert catalog.drift_checks(local, "flights_delay") == ["2013-07-01", "2013-07-02"]
    assert catalog.drift_checks(local, "other_model") == ["2013-07-06"]
    assert catalog.drift_checks(local, "nothing_yet") == []


def test_read_validated_reads_a_partition_or_names_the_missing_one(local):
    local.write_parquet(catalog.validated_file("flights", DS), pa.table({"a": [1, 2, 3]}))
    assert catalog.read_validated(local, "flights", DS)["a"].tolist() == [1, 2, 3]
    with pytest.raises(NoValidatedPartition) as err:
        catalog.read_validated(local, "flights", dt.date(2013, 1, 2))
    assert isinstance(err.value, MissingInput) and err.value.exit_code == 5
    assert str(err.value) == "no validated partition flights ds=2013-01-02 (run validate first)"
    assert (err.value.dataset, err.value.ds) == ("flights", "2013-01-02")


# --- listing a delivery and a scoring checkpoint --------------------------------------------------------------------


def test_landed_files_skips_markers_in_flight_output_and_checksums(local):
    folder = catalog.landing_dir("flights", DS)
    for name in ("flights_JFK.csv", "flights_EWR.csv", "sub/deeper/x.csv"):
        local.write_bytes(catalog.landing_file("flights", DS, name), b"a,b\n")
    local.write_bytes(catalog.landing_file("flights", DS, "_SUCCESS"), b"")
    local.write_bytes(catalog.landing_file("flights", DS, "_temporary/x"), b"half")
    local.write_bytes(catalog.landing_file("flights", DS, "_temporary/0/part-0.csv"), b"half")
    local.write_bytes(catalog.landing_file("flights", DS, "sub/_SUCCESS"), b"")
    _touch(local, f"{folder}/.flights_JFK.csv.crc", b"crc")
    _touch(local, f"{folder}/sub/.x.csv.crc", b"crc")
    _touch(local, f"{folder}/.staging/y.csv", b"half")
    local.write_bytes(catalog.landing_file("flights", "2013-01-02", "flights_LGA.csv"), b"other day")
    local.write_bytes(catalog.landing_file("other", DS, "flights_LGA.csv"), b"other dataset")

    landed = catalog.landed_files(local, "flights", DS)
    assert landed == [
        Landed(catalog.landing_file("flights", DS, "flights_EWR.csv"), "flights_EWR.csv"),
        Landed(catalog.landing_file("flights", DS, "flights_JFK.csv"), "flights_JFK.csv"),
        Landed(catalog.landing_file("flights", DS, "sub/deeper/x.csv"), "sub/deeper/x.csv"),
    ]
    assert [f.key for f in landed] == [f"{folder}/{f.name}" for f in landed]
    assert catalog.landed_files(local, "flights", "2013-01-03") == []


def test_landed_files_of_a_delivery_with_only_metadata_is_empty(local):
    local.write_bytes(catalog.landing_file("flights", DS, "_SUCCESS"), b"")
    local.write_bytes(catalog.landing_file("flights", DS, "_temporary/x"), b"half")
    _touch(local, f"{catalog.landing_dir('flights', DS)}/.x.crc", b"crc")
    assert catalog.landed_files(local, "flights", DS) == []


def test_committed_markers_parses_the_markers_of_one_plan(local):
    m = "flights_delay"
    for i in (0, 1, 4, 12):
        local.write_json(catalog.chunk_marker(m, DS, PLAN, i), {"rows": 10})
    for i in (0, 1, 2, 4):
        local.write_bytes(catalog.chunk_data(m, DS, PLAN, i), b"arrow")  # data alone is not committed
    folder = catalog.plan_dir(m, DS, PLAN)
    _touch(local, f"{folder}/chunk-3.json")
    _touch(local, f"{folder}/chunk-000005.json")
    _touch(local, f"{folder}/chunk-00006.json.bak")
    _touch(local, f"{folder}/chunk-0000a.json")
    _touch(local, f"{folder}/sub/chunk-00007.json")
    _touch(local, f"{folder}/.chunk-00008.json.0123abcd.tmp")  # an in-flight write
    local.write_json(catalog.chunk_marker(m, DS, OTHER_PLAN, 9), {"rows": 10})  # a stale plan
    local.write_json(catalog.chunk_marker(m, "2013-01-02", PLAN, 10), {"rows": 10})  # another day

    assert catalog.committed_markers(local, m, DS, PLAN) == {
        0: catalog.chunk_marker(m, DS, PLAN, 0),
        1: catalog.chunk_marker(m, DS, PLAN, 1),
        4: catalog.chunk_marker(m, DS, PLAN, 4),
        12: catalog.chunk_marker(m, DS, PLAN, 12),
    }
    assert catalog.committed_markers(local, m, DS, OTHER_PLAN) == {9: catalog.chunk_marker(m, DS, OTHER_PLAN, 9)}
    assert catalog.committed_markers(local, m, DS, "00000000ffffffff") == {}


def test_plan_ids_lists_the_plan_folders_of_a_partition(local):
    m = "flights_delay"
    assert catalog.plan_ids(local, m, DS) == []
    local.write_json(catalog.scoring_plan(m, DS), {"plan_id": PLAN})
    assert catalog.plan_ids(local, m, DS) == []  # the plan file is not a plan folder
    local.write_json(catalog.chunk_marker(m, DS, PLAN, 0), {"rows": 1})
    local.write_bytes(catalog.chunk_data(m, DS, OTHER_PLAN, 3), b"arrow")
    local.write_bytes(catalog.chunk_data(m, DS, OTHER_PLAN, 4), b"arrow")
    folder = catalog.checkpoint_dir(m, DS)
    _touch(local, f"{folder}/0123456789ABCDEF/chunk-00000.json")  # upper case
    _touch(local, f"{folder}/0123456789abcde/chunk-00000.json")  # 15 characters
    _touch(local, f"{folder}/0123456789abcdef0/chunk-00000.json")  # 17 characters
    _touch(local, f"{folder}/not-a-plan/chunk-00000.json")
    _touch(local, f"{folder}/0123456789abcdee")  # a file, not a folder
    local.write_json(catalog.chunk_marker(m, "2013-01-02", "1111111111111111", 0), {"rows": 1})
    local.write_json(catalog.chunk_marker("other_model", DS, "2222222222222222", 0), {"rows": 1})

    assert catalog.plan_ids(local, m, DS) == [PLAN, OTHER_PLAN]
    assert catalog.plan_ids(local, m, "2013-01-02") == ["1111111111111111"]


@pytest.mark.parametrize("name", ["", "sub/", "/", "../x.csv", "a/../b.csv"])
def test_a_file_inside_a_partition_needs_a_safe_file_name(name):
    for key_of in (catalog.landing_file, catalog.quarantine_file):
        with pytest.raises(ConfigError):
            key_of("flights", "2013-01-01", name)


@pytest.mark.parametrize(
    "key_of",
    [catalog.landing_dir, catalog.validated_file, catalog.scores_file, catalog.scoring_plan, catalog.drift_summary],
)
def test_a_partition_key_is_required_where_a_key_names_a_partition(key_of):
    with pytest.raises(InvalidPartitionKey):
        key_of("flights", None)
