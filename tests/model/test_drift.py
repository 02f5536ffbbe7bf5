"""Drift and performance monitoring on the real 2013 flights, against a champion trained on January.

Winter partitions do not fire, summer ones do (with the drifted features
named), an injected shift fires, and the cooldown keeps a firing from
repeating on the next partitions.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil

import pandas as pd
import pytest

from pipelines.core import catalog
from pipelines.core.config import DriftConfig, load_project
from pipelines.core.partitions import date_range
from pipelines.core.storage import get_storage
from pipelines.monitoring.drift import run_drift
from pipelines.training.gate import run_gate
from pipelines.training.train import train_challenger


@pytest.fixture(scope="module")
def monitored(seasons, tmp_path_factory):
    """Winter and summer partitions, and a champion trained through 2013-01-31 (one per module)."""
    root = tmp_path_factory.mktemp("monitored") / "data"
    table = catalog.validated_table("flights")
    shutil.copytree(seasons / table, root / table)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PIPELINES_DATA_ROOT", str(root))
        mp.setenv("PIPELINES_CODE_VERSION", "test")
        project = load_project("flights_delay")
        trained = train_challenger(project, "2013-01-31")
        assert run_gate(project)["promoted"]
        yield {"root": root, "version": trained["version"]}


@pytest.fixture
def env(monitored, monkeypatch):
    monkeypatch.setenv("PIPELINES_DATA_ROOT", str(monitored["root"]))
    monkeypatch.setenv("PIPELINES_CODE_VERSION", "test")
    return monitored


def _with(project, **drift):
    return project.model_copy(update={"drift": DriftConfig(**(project.drift.model_dump() | drift))})


def _cli_json(capsys, *args) -> dict:
    from pipelines.cli import main

    capsys.readouterr()
    assert main(list(args)) == 0
    return json.loads(capsys.readouterr().out)


def test_january_and_early_february_do_not_fire(env, capsys):
    out = _cli_json(capsys, "drift", "--model", "flights_delay", "--ds", "2013-01-28", "--json")
    assert out["policy_fired"] is False and out["model_version"] == env["version"]
    for key in ("ds", "drift_share", "drifted_features", "performance", "reason", "report"):
        assert key in out
    assert out["performance"]["metrics"]["log_loss"]["baseline"] > 0
    assert out["performance"]["partition"]["rows"] > 0

    # No cooldown here: it must be the data, not the policy's memory, that keeps it quiet.
    project = _with(load_project("flights_delay"), cooldown_days=0)
    storage = get_storage()
    results = [run_drift(project, ds, storage) for ds in date_range("2013-01-25", "2013-02-14")]
    assert [r["ds"] for r in results if r["policy_fired"]] == []
    assert all(r["signal"] is False and r["drifted_features"] == [] for r in results), [
        (r["ds"], r["reasons"]) for r in results if r["signal"]
    ]
    assert max(r["performance"]["metrics"]["log_loss"]["decay"] for r in results) < 0.15
    assert all(r["seconds"]["drift"] < 10 for r in results)  # a sanity bound; the 3 s target is in make bench


def test_summer_fires_once_per_cooldown_with_drifted_features_named(env, capsys):
    first = _cli_json(capsys, "drift", "--model", "flights_delay", "--ds", "2013-07-01", "--json")
    # The partition before was measured as history (hysteresis): both signal.
    assert first["decision"]["history"] == [{"ds": "2013-06-30", "signal": True}]
    assert first["policy_fired"] is True, first["reason"]
    assert "dest" in first["drifted_features"] and first["drift_share"] >= 0.1
    assert first["performance"]["metrics"]["log_loss"]["decayed"] is True  # the summer's delays
    assert first["performance"]["metrics"]["positive_share"]["value"] > 0.4
    storage = get_storage()
    assert first["report"] == storage.uri(catalog.drift_summary("flights_delay", "2013-07-01"))
    assert first["report"].endswith("/reports/models/flights_delay/ds=2013-07-01/drift.json")
    assert storage.exists(catalog.drift_html("flights_delay", "2013-07-01", "features"))
    assert storage.exists(catalog.drift_html("flights_delay", "2013-07-01", "scores"))
    history = storage.read_json(catalog.drift_summary("flights_delay", "2013-06-30"))
    assert history["policy_fired"] is None and history["signal"] is True

    project = load_project("flights_delay")
    later = [run_drift(project, ds, storage) for ds in date_range("2013-07-02", "2013-07-08")]
    assert all(r["signal"] for r in later)
    assert not any(r["policy_fired"] for r in later)
    assert all(r["reason"].startswith("cooldown: last firing on 2013-07-01") for r in later)

    # Live metrics land on the champion's run, one step per partition day.
    from pipelines.core.tracking import client

    run_id = first["run_id"]
    steps = {m.step for m in client().get_metric_history(run_id, "live_log_loss")}
    assert (dt.date(2013, 7, 1) - dt.date(1970, 1, 1)).days in steps


def _shifted(storage, source: str, target: str, minutes: int) -> None:
    """Copy a validated winter partition to ``target`` with every departure ``minutes`` later."""
    import pyarrow as pa

    frame = catalog.read_validated(storage, "flights", source)
    day = dt.date.fromisoformat(target)
    frame["year"], frame["month"], frame["day"] = day.year, day.month, day.day

    def later(hhmm: pd.Series) -> pd.Series:
        m = ((hhmm // 100) * 60 + hhmm % 100 + minutes) % (24 * 60)
        return (m // 60) * 100 + m % 60

    for col in ("sched_dep_time", "sched_arr_time"):
        frame[col] = later(frame[col]).astype(frame[col].dtype)
    frame["hour"] = (frame["sched_dep_time"] // 100).astype(frame["hour"].dtype)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    storage.write_parquet(catalog.validated_file("flights", target), table)


def test_injected_shift_fires_and_names_the_shifted_features(env):
    storage = get_storage()
    # A schedule change from 2013-02-15 on: every flight leaves five hours later.
    for source, target in (("2013-02-06", "2013-02-15"), ("2013-02-07", "2013-02-16"), ("2013-02-08", "2013-02-17")):
        _shifted(storage, source, target, 300)
    project = _with(load_project("flights_delay"), cooldown_days=0)
    quiet = run_drift(project, "2013-02-14", storage)
    assert not quiet["signal"]
    results = {ds: run_drift(project, ds, storage) for ds in date_range("2013-02-15", "2013-02-17")}
    # The week-long window sees one shifted day in seven, then two (a signal), then three (a second one: fire).
    assert results["2013-02-16"]["signal"]
    assert [ds for ds, r in results.items() if r["policy_fired"]] == ["2013-02-17"]
    fired = results["2013-02-17"]
    assert {"hour", "sched_dep_minutes", "sched_arr_minutes"} <= set(fired["drifted_features"]), fired["columns"]
    assert "dest" not in fired["drifted_features"] and "carrier" not in fired["drifted_features"]
