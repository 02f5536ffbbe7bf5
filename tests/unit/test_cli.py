"""The CLI: JSON output, exit codes, one clear line for expected failures, lazy imports."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from pipelines.cli import main
from pipelines.core import catalog
from pipelines.core.settings import PROJECT_ROOT


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipelines", *args],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        env={**os.environ, **(env or {})},
        timeout=300,
    )


def test_seed_demo_json(data_root, capsys):
    code = main(
        [
            "seed-demo",
            "--model",
            "flights_delay",
            "--start",
            "2013-01-01",
            "--end",
            "2013-01-07",
            "--inject-faults",
            "--json",
        ]
    )
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert next(d["ds"] for d in out["days"]) == "2013-01-01"
    assert sum(1 for d in out["days"] if d["fault"]) == 5
    assert out["rows"] == sum(d["rows"] for d in out["days"])
    assert (data_root / catalog.landing_file("flights", "2013-01-06", "flights_JFK.csv")).is_file()


def test_invalid_partition_exits_2_with_one_line(data_root, capsys):
    code = main(["validate", "--model", "flights_delay", "--ds", "2013-01-01/../../etc"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("error: invalid partition key")


def test_unknown_model_exits_2(data_root, capsys):
    assert main(["validate", "--model", "nope", "--ds", "2013-01-01"]) == 2
    assert "no such model project" in capsys.readouterr().err


def test_validate_names_a_dataset_or_a_model_reading_it_never_both(data_root, capsys):
    assert main(["seed-demo", "--dataset", "flights", "--start", "2013-01-05", "--end", "2013-01-05"]) == 0
    capsys.readouterr()
    assert main(["validate", "--dataset", "flights", "--ds", "2013-01-05", "--json"]) == 0
    by_dataset = json.loads(capsys.readouterr().out)
    assert main(["validate", "--model", "flights_air_time", "--ds", "2013-01-05", "--json"]) == 0
    by_model = json.loads(capsys.readouterr().out)
    assert by_dataset["dataset"] == by_model["dataset"] == "flights" and "model" not in by_dataset
    assert by_dataset["validated_rows"] == by_model["validated_rows"] > 0
    for args in ([], ["--dataset", "flights", "--model", "flights_delay"]):
        assert main(["validate", *args, "--ds", "2013-01-05"]) == 2
        assert "give --dataset D, or --model M" in capsys.readouterr().err
    assert main(["validate", "--dataset", "trains", "--ds", "2013-01-05"]) == 2
    assert "no such dataset (known: flights)" in capsys.readouterr().err


def test_seed_outside_2013_is_a_config_error(data_root, capsys):
    assert main(["seed-demo", "--model", "flights_delay", "--start", "2014-01-01", "--end", "2014-01-02"]) == 2


def test_validate_halt_and_nothing_landed_exit_codes(data_root):
    """Real processes: halt exits 3 with JSON on stdout and one line on stderr, no traceback."""
    env = {"PIPELINES_DATA_ROOT": str(data_root)}
    assert (
        run_cli(
            "seed-demo",
            "-m",
            "flights_delay",
            "--start",
            "2013-01-03",
            "--end",
            "2013-01-03",
            "--inject-faults",
            env=env,
        ).returncode
        == 0
    )
    halted = run_cli("validate", "-m", "flights_delay", "--ds", "2013-01-03", "--json", env=env)
    assert halted.returncode == 3, halted.stderr
    summary = json.loads(halted.stdout)
    assert summary["status"] == "halted" and summary["rules_halted"] == ["quarantine_rate"]
    assert "Traceback" not in halted.stderr
    errors = [line for line in halted.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "halted by quarantine_rate" in errors[0]

    missing = run_cli("validate", "-m", "flights_delay", "--ds", "2013-01-04", env=env)
    assert missing.returncode == 5
    assert "nothing landed" in missing.stderr and "Traceback" not in missing.stderr
