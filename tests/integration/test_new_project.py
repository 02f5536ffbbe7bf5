"""`pipelines new-project`: a dataset the repo has never seen, from a sample to a scored day.

Each test generates its own dataset (a feed no config or contract in the repo
knows), lands it day by day under a fresh storage root, points the config and
contract folders at temporary copies, and runs the CLI in process. The only
input beyond the sample is the target's name (``--target``): the contract,
the dataset config and the project config are used as generated, and must
validate every landed day with nothing quarantined, train, pass the gate as a
first champion and score a day.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from pipelines.cli import main
from pipelines.core import catalog
from pipelines.core.settings import PROJECT_ROOT

START = dt.date(2022, 3, 7)
DAYS = 14


# ---- datasets the repo has never seen


def _land(root: Path, dataset: str, day: dt.date, frame: pd.DataFrame, name: str) -> None:
    """One day's delivery: the data file, then the ready marker upstream writes last."""
    folder = root / catalog.landing_dir(dataset, day.isoformat())
    folder.mkdir(parents=True, exist_ok=True)
    if name.endswith(".parquet"):
        frame.to_parquet(folder / name, index=False)
    else:
        frame.to_csv(folder / name, index=False)
    (folder / "_SUCCESS").write_text("")


def land_parcels(root: Path, days: int = DAYS, rows: int = 300, seed: int = 7) -> dict[str, int]:
    """Parcels shipped from four depots, as CSV, one file a day: a string id, a ship date, two categories,
    three measurements (one with nulls) and the transit time, which depends on them (regression)."""
    rng = np.random.default_rng(seed)
    landed, serial = {}, 0
    for i in range(days):
        day = START + dt.timedelta(days=i)
        k = rows + int(rng.integers(-40, 40))
        depot = rng.choice(["north", "south", "east", "west"], k)
        service = rng.choice(["standard", "express"], k, p=[0.7, 0.3])
        weight = rng.gamma(2.0, 3.0, k).round(2)
        distance = rng.uniform(5, 800, k).round(1)
        value = np.where(rng.random(k) < 0.1, np.nan, rng.lognormal(4, 1, k).round(2))
        hours = (
            6
            + distance / 40
            + np.where(service == "express", -5, 3)
            + np.where(depot == "north", 4, 0)
            + 0.2 * weight
            + rng.normal(0, 2, k)
        )
        frame = pd.DataFrame(
            {
                "parcel_id": [f"P{serial + j:07d}" for j in range(k)],
                "ship_date": day.isoformat(),
                "depot": depot,
                "service": service,
                "weight_kg": weight,
                "distance_km": distance,
                "declared_value": value,
                "transit_hours": hours.round(2),
            }
        )
        serial += k
        _land(root, "parcels", day, frame, "parcels.csv")
        landed[day.isoformat()] = k
    return landed


def land_meters(root: Path, days: int = DAYS, meters: int = 260, seed: int = 11) -> dict[str, int]:
    """Daily readings of electricity meters, as Parquet: year/month/day columns, a meter id that repeats
    every day, a region, a UTC reading time, measurements, and whether the meter was tampered with (0/1)."""
    rng = np.random.default_rng(seed)
    landed = {}
    for i in range(days):
        day = START + dt.timedelta(days=i)
        ids = np.sort(rng.choice(np.arange(1000, 1000 + meters), meters - int(rng.integers(0, 12)), replace=False))
        k = len(ids)
        region = rng.choice(["alpine", "coastal", "urban"], k)
        usage = rng.gamma(3.0, 4.0, k).round(3)
        night = rng.uniform(0, 1, k).round(3)
        temp = (rng.normal(5, 4, k) + np.where(region == "coastal", 8, 0)).round(1)
        logit = -2.2 + 3.0 * night + 1.2 * (region == "urban") - 0.04 * usage
        seconds = rng.integers(0, 86_400, k)
        frame = pd.DataFrame(
            {
                "year": day.year,
                "month": day.month,
                "day": day.day,
                "meter_id": ids,
                "region": region,
                "reading_at": pd.Timestamp(day, tz="UTC") + pd.to_timedelta(seconds, unit="s"),
                "usage_kwh": usage,
                "night_share": night,
                "temp_c": temp,
                "tampered": (rng.random(k) < 1 / (1 + np.exp(-logit))).astype("int64"),
            }
        )
        _land(root, "meter_readings", day, frame, "readings.parquet")
        landed[day.isoformat()] = k
    return landed


def land_trips(root: Path, days: int = 3, rows: int = 120, seed: int = 3) -> dict[str, int]:
    """Taxi trips whose pickup time is local time with a -05:00 offset: late-evening trips fall on the next
    UTC day, so only the zone five hours west of UTC puts every row on its delivery's day."""
    rng = np.random.default_rng(seed)
    landed = {}
    for i in range(days):
        day = START + dt.timedelta(days=i)
        minutes = np.sort(rng.integers(0, 24 * 60, rows))
        minutes[-1] = 23 * 60 + 30  # always one trip after 19:00 local: past midnight in UTC
        frame = pd.DataFrame(
            {
                "trip_id": [f"{day:%Y%m%d}-{j:04d}" for j in range(rows)],
                "pickup_at": [f"{day}T{m // 60:02d}:{m % 60:02d}:00-05:00" for m in minutes],
                "zone": rng.choice(["midtown", "harlem", "soho"], rows),
                "miles": rng.uniform(0.5, 12, rows).round(2),
            }
        )
        frame["fare"] = (3 + 2.5 * frame["miles"] + rng.normal(0, 1, rows)).round(2)
        _land(root, "taxi_trips", day, frame, "trips.csv")
        landed[day.isoformat()] = rows
    return landed


# ---- the environment: temporary config and contract folders, a fresh storage root


@pytest.fixture
def folders(data_root, tmp_path, monkeypatch) -> dict[str, Path]:
    """Config and contract folders holding the repo's profiles and its flights dataset and project."""
    configs, contracts = tmp_path / "configs", tmp_path / "contracts"
    shutil.copytree(PROJECT_ROOT / "configs" / "profiles", configs / "profiles")
    shutil.copytree(PROJECT_ROOT / "configs" / "datasets", configs / "datasets")
    shutil.copy(PROJECT_ROOT / "configs" / "flights_delay.yaml", configs / "flights_delay.yaml")
    contracts.mkdir()
    shutil.copy(PROJECT_ROOT / "data_contracts" / "flights.odcs.yaml", contracts / "flights.odcs.yaml")
    monkeypatch.setenv("PIPELINES_CONFIG_DIR", str(configs))
    monkeypatch.setenv("PIPELINES_CONTRACTS_DIR", str(contracts))
    monkeypatch.setenv("PIPELINES_CODE_VERSION", "test")
    return {"configs": configs, "contracts": contracts, "data": data_root}


def cli(capsys, *args: str) -> tuple[int, dict | None, str]:
    """Run ``pipelines ARGS --json`` in process: exit code, the JSON answer (None if none), stderr."""
    capsys.readouterr()
    code = main([*args, "--json"])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip() else None), err


def new_project(capsys, *args: str) -> tuple[int, dict | None, str]:
    return cli(capsys, "new-project", *args)


def snapshot(*folders: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for f in folders for p in sorted(f.rglob("*")) if p.is_file()}


def validate_train_gate_score(capsys, dataset: str, model: str, landed: dict[str, int]) -> dict:
    """Every landed day validates with nothing quarantined; then train, gate (promoted) and score the last day."""
    days = sorted(landed)
    code, out, err = cli(capsys, "validate", "--dataset", dataset, "--ds", days[0], "--to", days[-1])
    assert code == 0, err[-2000:]
    assert (out["published"], out["halted"], out["missing"]) == (len(days), 0, 0)
    for day in out["partitions"]:
        assert day["quarantined_rows"] == 0 and day["validated_rows"] == landed[day["ds"]], day
    code, trained, err = cli(capsys, "train", "--model", model, "--end-ds", days[-1])
    assert code == 0, err[-2000:]
    code, gate, err = cli(capsys, "gate", "--model", model)
    assert code == 0, err[-2000:]
    assert gate["promoted"] is True, gate
    code, scored, err = cli(capsys, "score", "--model", model, "--ds", days[-1])
    assert code == 0, err[-2000:]
    assert scored["rows"] == landed[days[-1]]
    scores = pd.read_parquet(local_path(scored["output"]))
    assert len(scores) == landed[days[-1]] and scores["row_id"].is_unique
    return {"trained": trained, "gate": gate, "scored": scored, "scores": scores}


def local_path(uri: str) -> str:
    return uri.removeprefix("file://")


# ---- from a sample to a scored day


def test_regression_on_a_new_csv_dataset_from_one_days_sample(folders, capsys):
    """One day's folder is the sample. Without --target the contract and dataset are written and the
    candidates listed; naming the target then writes the project alone, which runs as generated."""
    landed = land_parcels(folders["data"])
    sample = folders["data"] / catalog.landing_dir("parcels", START.isoformat())
    code, out, err = new_project(capsys, "parcel_eta", "--dataset", "parcels", "--sample", str(sample))
    assert code == 0, err
    contract_path = folders["contracts"] / "parcels.odcs.yaml"
    dataset_path = folders["configs"] / "datasets" / "parcels.yaml"
    assert out["written"] == [str(contract_path), str(dataset_path)]
    assert out["project_written"] is False and "transit_hours" in out["candidates"]
    assert out["next"] == [f"pipelines new-project parcel_eta --dataset parcels --sample {sample} --target COLUMN"]
    assert out["primary_key"] == ["parcel_id"] and out["partition_date"] == {"column": "ship_date"}
    assert out["columns"]["ship_date"] == "date" and out["columns"]["declared_value"] == "number"

    contract = yaml.safe_load(contract_path.read_text())
    props = {p["name"]: p for p in contract["schema"][0]["properties"]}
    assert props["parcel_id"]["required"] and "required" not in props["declared_value"]  # 10 % nulls
    suggestions = [q for p in props.values() for q in p.get("quality", [])]
    assert suggestions and all(q["severity"] == "warning" for q in suggestions)
    assert contract_path.read_text().count("# REVIEW") >= len(suggestions)
    dataset = yaml.safe_load(dataset_path.read_text())
    assert dataset["ingest"]["start_date"] == START and dataset["ingest"]["ready_marker"] == "_SUCCESS"
    assert dataset["landing_format"] == "csv"

    before = snapshot(folders["contracts"], folders["configs"] / "datasets")
    # The command it suggests, with the target named: the sample sizes the project.
    code, out, err = new_project(
        capsys, "parcel_eta", "--dataset", "parcels", "--sample", str(sample), "--target", "transit_hours"
    )
    assert code == 0, err
    assert out["written"] == [str(folders["configs"] / "parcel_eta.yaml")]  # the dataset exists now
    assert snapshot(folders["contracts"], folders["configs"] / "datasets") == before
    assert out["task"] == "regression"
    assert out["features"] == {
        "numeric": ["weight_kg", "distance_km", "declared_value"],
        "categorical": ["depot", "service"],
        "expressions": ["weekday"],
    }
    assert out["excluded"]["parcel_id"] == "the natural key"

    ran = validate_train_gate_score(capsys, "parcels", "parcel_eta", landed)
    assert ran["trained"]["metrics"]["mae_skill"] > 0.3  # the transit time has real signal
    assert set(ran["scores"].columns) >= {"parcel_id", "row_id", "score", "model_version", "ds"}


def test_classification_on_a_new_parquet_dataset_from_its_landing_folder(folders, capsys):
    """The whole landing folder is the sample, and the target is named at once: three files, one run."""
    landed = land_meters(folders["data"])
    sample = folders["data"] / catalog.landing_table("meter_readings")
    code, out, err = new_project(
        capsys, "tamper_risk", "--dataset", "meter_readings", "--sample", str(sample), "--target", "tampered"
    )
    assert code == 0, err
    assert len(out["written"]) == 3 and out["project_written"] is True
    assert out["sample"]["days"] == DAYS and out["sample"]["landing_format"] == "parquet"
    assert out["partition_date"] == {"year": "year", "month": "month", "day": "day"}
    assert out["primary_key"] == ["year", "month", "day", "meter_id"]  # meter ids repeat every day
    assert out["columns"]["reading_at"] == "timestamp" and out["columns"]["meter_id"] == "integer"
    assert (out["task"], out["positive_threshold"]) == ("classification", 1.0)
    assert out["features"]["categorical"] == ["region"]
    assert out["features"]["numeric"] == ["usage_kwh", "night_share", "temp_c"]
    assert out["sizes"]["window_days"] == DAYS and out["sizes"]["holdout_days"] == 5
    contract = yaml.safe_load((folders["contracts"] / "meter_readings.odcs.yaml").read_text())
    props = {p["name"]: p for p in contract["schema"][0]["properties"]}
    assert props["usage_kwh"]["required"] and "required" not in props["tampered"]  # an outcome may come later
    project = yaml.safe_load((folders["configs"] / "tamper_risk.yaml").read_text())
    assert project["gate"]["floors"] == {"roc_auc": 0.55}
    assert (
        yaml.safe_load((folders["configs"] / "datasets" / "meter_readings.yaml").read_text())["landing_format"]
        == "parquet"
    )

    ran = validate_train_gate_score(capsys, "meter_readings", "tamper_risk", landed)
    assert ran["trained"]["metrics"]["roc_auc"] > 0.6
    assert set(ran["scores"]["label"].unique()) <= {0, 1}


def test_a_timestamp_with_an_offset_dates_the_partition_in_its_zone(folders, capsys):
    """Pickup times at -05:00 run past midnight UTC: the rule names the fixed zone that fits, and every day
    validates as generated."""
    landed = land_trips(folders["data"])
    sample = folders["data"] / catalog.landing_table("taxi_trips")
    code, out, err = new_project(
        capsys, "fares", "--dataset", "taxi_trips", "--sample", str(sample), "--target", "fare"
    )
    assert code == 0, err
    assert out["partition_date"] == {"column": "pickup_at", "timezone": "Etc/GMT+5"}
    assert out["primary_key"] == ["trip_id"]
    assert out["features"]["expressions"] == ["pickup_at_hour"]
    days = sorted(landed)
    code, out, err = cli(capsys, "validate", "--dataset", "taxi_trips", "--ds", days[0], "--to", days[-1])
    assert code == 0, err[-2000:]
    assert out["published"] == len(days)
    assert all(d["quarantined_rows"] == 0 for d in out["partitions"])


def test_a_dataset_with_no_natural_key_is_validated_trained_and_scored(folders, capsys):
    """Sensor readings with no id and repeated rows: no key can be inferred, the contract has none, and
    scoring still publishes every row (row_id is then the row's position in the validated file)."""
    rng = np.random.default_rng(5)
    landed = {}
    for i in range(DAYS):
        day = START + dt.timedelta(days=i)
        sensor = rng.choice(["north", "south"], 200)
        load = rng.uniform(0, 10, 200).round(0)  # few distinct values: whole rows repeat
        frame = pd.DataFrame({"reading_date": day.isoformat(), "sensor": sensor, "load": load})
        frame["watts"] = (50 * frame["load"] + np.where(sensor == "north", 30, 0) + rng.normal(0, 5, 200)).round(1)
        frame = pd.concat([frame, frame.head(20)], ignore_index=True)  # exact duplicate rows
        _land(folders["data"], "sensor_load", day, frame, "readings.csv")
        landed[day.isoformat()] = len(frame)
    sample = folders["data"] / catalog.landing_table("sensor_load")
    code, out, err = new_project(
        capsys, "watts", "--dataset", "sensor_load", "--sample", str(sample), "--target", "watts"
    )
    assert code == 0, err
    assert out["primary_key"] == []
    result = validate_train_gate_score(capsys, "sensor_load", "watts", landed)
    assert sorted(result["scores"]["row_id"]) == list(range(landed[max(landed)]))


# ---- a dataset the repo knows


def test_a_known_dataset_gets_only_a_project_config(folders, capsys):
    before = snapshot(folders["contracts"], folders["configs"] / "datasets")
    code, out, err = new_project(
        capsys, "delay_minutes", "--dataset", "flights", "--target", "arr_delay", "--task", "regression"
    )
    assert code == 0, err
    assert out["written"] == [str(folders["configs"] / "delay_minutes.yaml")]
    assert out["new_dataset"] is False and out["sized_on"] is None  # nothing validated yet: the defaults
    assert snapshot(folders["contracts"], folders["configs"] / "datasets") == before
    features = out["features"]["numeric"] + out["features"]["categorical"]
    assert "arr_delay" not in features and "time_hour" not in features
    assert not {"year", "month", "day", "carrier", "flight", "origin"} & set(features)  # the natural key
    assert {"distance", "dest"} <= set(features)

    from pipelines.core.config import load_project
    from pipelines.core.contracts import contract_for
    from pipelines.core.features import feature_spec

    project = load_project("delay_minutes")
    contract = contract_for(project)
    feature_spec(project, contract.column_names, {c.name: c.logical_type for c in contract.columns})
    assert (project.training.window_days, project.training.holdout_days) == (60, 7)


def test_a_known_dataset_without_a_target_lists_the_candidates_and_writes_nothing(folders, capsys):
    before = snapshot(folders["configs"], folders["contracts"])
    code, out, err = new_project(capsys, "delays", "--dataset", "flights")
    assert code == 2 and out is None
    assert "--target COLUMN" in err and "arr_delay (number: regression)" in err
    assert snapshot(folders["configs"], folders["contracts"]) == before


# ---- column names SQL or the system could trip on


def land_orders(root: Path, dataset: str, columns: dict[str, str], days: int = 3, rows: int = 40) -> Path:
    """A small CSV feed whose columns are named as ``columns`` maps the roles: the day's date (``date``) or
    its parts (``year``, ``month``, ``day``), an id (``id``), a category (``kind``), a measure and the target."""
    rng = np.random.default_rng(13)
    for i in range(days):
        day = START + dt.timedelta(days=i)
        parts = {"date": day.isoformat(), "year": day.year, "month": day.month, "day": day.day}
        frame = pd.DataFrame({col: parts[role] for role, col in columns.items() if role in parts}, index=range(rows))
        frame[columns["id"]] = [f"O{i:02d}{j:04d}" for j in range(rows)]
        frame[columns["kind"]] = rng.choice(["a", "b", "c"], rows)
        frame[columns["qty"]] = rng.gamma(2.0, 3.0, rows).round(2)
        frame[columns["target"]] = (frame[columns["qty"]] * 2 + rng.normal(0, 1, rows)).round(2)
        _land(root, dataset, day, frame, "orders.csv")
    return root / catalog.landing_table(dataset)


def test_keywords_capitals_and_spaces_in_column_names_are_quoted_in_the_generated_expressions(folders, capsys):
    """A date column named ``order`` (an SQL keyword) dates the partition: the weekday expression quotes it,
    loads and computes on the sample, as do a category named ``from`` and a measure named ``Left Qty``."""
    roles = {"date": "order", "id": "order_no", "kind": "from", "qty": "Left Qty", "target": "end"}
    sample = land_orders(folders["data"], "orders", roles)
    code, out, err = new_project(
        capsys, "order_size", "--dataset", "orders", "--sample", str(sample), "--target", "end"
    )
    assert code == 0, err
    assert out["partition_date"] == {"column": "order"} and out["primary_key"] == ["order_no"]
    assert out["features"] == {"numeric": ["Left Qty"], "categorical": ["from"], "expressions": ["weekday"]}
    project = yaml.safe_load((folders["configs"] / "order_size.yaml").read_text())
    assert project["features"]["expressions"]["weekday"]["expr"] == 'isodow("order") - 1'


def test_the_weekday_is_built_from_the_partition_rules_own_year_month_day_columns(folders, capsys):
    """A known dataset whose partition-date rule names yr, mo and dy: the weekday reads those columns."""
    from pipelines.core.config import load_project
    from pipelines.core.contracts import contract_for
    from pipelines.core.features import feature_spec, make_features
    from pipelines.scaffold.infer import typed_frames
    from pipelines.scaffold.sample import read_sample

    roles = {"year": "yr", "month": "mo", "day": "dy", "id": "order_id", "kind": "kind", "qty": "qty"}
    sample = land_orders(folders["data"], "orders", {**roles, "target": "total"})
    code, out, err = new_project(capsys, "order_total", "--dataset", "orders", "--sample", str(sample))
    assert code == 0, err
    # The day's parts go by other names than year/month/day: the reviewer adds the rule by hand.
    path = folders["contracts"] / "orders.odcs.yaml"
    contract = yaml.safe_load(path.read_text())
    contract["schema"][0]["quality"].append(
        {
            "id": "partition_date_matches",
            "type": "custom",
            "engine": "pipelines",
            "implementation": "partitionDateMatches",
            "arguments": {"year": "yr", "month": "mo", "day": "dy"},
            "severity": "critical",
        }
    )
    path.write_text(yaml.safe_dump(contract, sort_keys=False))
    code, out, err = new_project(
        capsys, "order_total", "--dataset", "orders", "--sample", str(sample), "--target", "total"
    )
    assert code == 0, err
    assert out["new_dataset"] is False and out["partition_date"] == {"year": "yr", "month": "mo", "day": "dy"}
    assert out["features"]["expressions"] == ["weekday"]
    project = load_project("order_total")
    assert project.features.expressions["weekday"].expr == 'isodow(make_date("yr", "mo", "dy")) - 1'
    contract = contract_for(project)
    spec = feature_spec(project, contract.column_names)
    frames = typed_frames(read_sample(sample), {c.name: c.logical_type for c in contract.columns})
    for ds, frame in frames:
        assert (make_features(frame, spec)["weekday"] == dt.date.fromisoformat(ds).weekday()).all()


# ---- refusals: named errors, exit 2, nothing written


def test_existing_files_are_kept_unless_forced(folders, capsys):
    land_parcels(folders["data"], days=2, rows=60)
    sample = str(folders["data"] / catalog.landing_table("parcels"))
    args = ("parcel_eta", "--dataset", "parcels", "--sample", sample, "--target", "transit_hours")
    assert new_project(capsys, *args)[0] == 0
    (folders["configs"] / "parcel_eta.yaml").write_text("# edited by hand\n" + "name: parcel_eta\n")
    before = snapshot(folders["configs"], folders["contracts"])
    code, out, err = new_project(capsys, *args)
    assert code == 2 and out is None
    assert "already there; pass --force" in err and err.count("\n") == 1
    assert snapshot(folders["configs"], folders["contracts"]) == before
    code, out, err = new_project(capsys, *args, "--force")
    assert code == 0, err
    assert "edited by hand" not in (folders["configs"] / "parcel_eta.yaml").read_text()


def test_a_contract_another_dataset_names_is_never_replaced_even_forced(folders, capsys):
    """parcels_archive's config names parcels.odcs.yaml: a new dataset parcels may not write over it."""
    land_parcels(folders["data"], days=2, rows=60)
    sample = str(folders["data"] / catalog.landing_table("parcels"))
    archive = (folders["configs"] / "datasets" / "flights.yaml").read_text()
    archive = archive.replace("name: flights", "name: parcels_archive").replace(
        "flights.odcs.yaml", "parcels.odcs.yaml"
    )
    (folders["configs"] / "datasets" / "parcels_archive.yaml").write_text(archive)
    shutil.copy(folders["contracts"] / "flights.odcs.yaml", folders["contracts"] / "parcels.odcs.yaml")
    before = snapshot(folders["configs"], folders["contracts"])
    args = ("parcel_eta", "--dataset", "parcels", "--sample", sample, "--target", "transit_hours")
    for extra in ((), ("--force",)):
        code, out, err = new_project(capsys, *args, *extra)
        assert code == 2 and out is None, err
        assert "the contract of dataset 'parcels_archive'" in err and "even with --force" in err
        assert err.startswith("error: ") and err.count("\n") == 1
    assert snapshot(folders["configs"], folders["contracts"]) == before


def test_a_sample_column_named_ds_is_refused_as_reserved(folders, capsys):
    """ds is the partition column of every table the system writes: one line saying so, nothing written."""
    rng = np.random.default_rng(2)
    for i in range(2):
        day = START + dt.timedelta(days=i)
        frame = pd.DataFrame({"ds": day.isoformat(), "site": ["a", "b", "c"], "load": rng.uniform(0, 1, 3)})
        _land(folders["data"], "loads", day, frame, "loads.csv")
    before = snapshot(folders["configs"], folders["contracts"])
    sample = str(folders["data"] / catalog.landing_table("loads"))
    code, out, err = new_project(capsys, "load", "--dataset", "loads", "--sample", sample, "--target", "load")
    assert code == 2 and out is None
    assert err.startswith("error: sample ") and err.count("\n") == 1 and "Traceback" not in err
    assert "column 'ds' has a reserved name (the partition column of every Hive-partitioned table" in err
    assert snapshot(folders["configs"], folders["contracts"]) == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("Bad-Name", "--dataset", "parcels"), "invalid project name 'Bad-Name'"),
        (("ok", "--dataset", "9parcels"), "invalid dataset name '9parcels'"),
        (("ok", "--dataset", "parcels"), "dataset 'parcels' is new"),
        (("ok", "--dataset", "parcels", "--sample", "/nonexistent/landing"), "no such file or folder"),
        (("ok", "--dataset", "flights", "--target", "carrier"), "part of the natural key"),
        (("ok", "--dataset", "flights", "--target", "dest"), "a target is a number or a boolean"),
        (("ok", "--dataset", "flights", "--target", "nope"), "'nope' is not a column of the contract"),
        (("ok", "--dataset", "flights", "--target", "arr_delay", "--task", "ranking"), "not one of"),
    ],
)
def test_bad_arguments_are_named_errors(folders, capsys, args, message):
    before = snapshot(folders["configs"], folders["contracts"])
    code, out, err = new_project(capsys, *args)
    assert code == 2 and out is None
    assert message in err and err.startswith("error: ") and "Traceback" not in err
    assert snapshot(folders["configs"], folders["contracts"]) == before


def test_a_sample_with_no_rows_is_refused(folders, capsys, tmp_path):
    day = tmp_path / "sample" / "2022-03-07"
    day.mkdir(parents=True)
    (day / "parcels.csv").write_text("parcel_id,weight_kg\n")
    code, out, err = new_project(capsys, "ok", "--dataset", "parcels", "--sample", str(day))
    assert code == 2 and out is None and "no data row" in err
    (day / "parcels.csv").unlink()
    (day / "notes.txt").write_text("hello\n")
    code, out, err = new_project(capsys, "ok", "--dataset", "parcels", "--sample", str(day))
    assert code == 2 and out is None and "unsupported file type" in err
    assert not (folders["configs"] / "datasets" / "parcels.yaml").exists()


def test_the_console_command_fails_in_one_line(folders):
    """As a user runs it: a real process, exit 2, one line on stderr, no traceback."""
    import os
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "pipelines", "new-project", "ok", "--dataset", "parcels", "--sample", "/nonexistent"],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        env=dict(os.environ),
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["error: sample /nonexistent: no such file or folder"]
