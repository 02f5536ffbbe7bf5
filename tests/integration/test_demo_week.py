"""The issue's acceptance run: a faulty week from an empty root, validated day by day through the CLI.

Counts reconcile on every published day, failed rules are named, and a day
halts only when a halt rule fired.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from pipelines.core import catalog
from pipelines.core.settings import PROJECT_ROOT
from pipelines_ops.demo_data import fault_for

pytestmark = pytest.mark.integration

EXPECTED_RULES = {
    "nulls_and_out_of_range": {"dep_delay_range", "dest_required", "distance_range", "sched_dep_time_required"},
    "unknown_airports_and_duplicate_keys": {"dest_known", "natural_key_unique"},
    "unreadable_file": {"file_unreadable"},
    "missing_column": {"missing_column", "dest_required", "quarantine_rate"},
    "type_changed": {"type_mismatch", "quarantine_rate"},
    None: set(),
}


def cli(*args: str, root) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipelines", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PIPELINES_DATA_ROOT": str(root)},
        cwd=PROJECT_ROOT,
        timeout=300,
    )


def test_faulty_week_reconciles(data_root):
    assert not any(data_root.iterdir())
    seeded = cli(
        "seed-demo",
        "--model",
        "flights_delay",
        "--start",
        "2013-01-01",
        "--end",
        "2013-01-07",
        "--inject-faults",
        "--json",
        root=data_root,
    )
    assert seeded.returncode == 0, seeded.stderr
    landed = {d["ds"]: d["rows"] for d in json.loads(seeded.stdout)["days"]}
    outcomes = {}
    for ds in sorted(landed):
        proc = cli("validate", "--model", "flights_delay", "--ds", ds, "--json", root=data_root)
        out = json.loads(proc.stdout)
        fault = fault_for(ds)
        assert set(out["rules_failed"]) == EXPECTED_RULES[fault], ds
        assert out["landed_rows"] == landed[ds]
        if out["rules_halted"]:
            assert proc.returncode == 3 and out["status"] == "halted"
            assert out["validated_rows"] == 0
            assert not (data_root / catalog.validated_dir("flights", ds)).exists()
            assert (data_root / catalog.validation_report("flights", ds)).is_file()  # the halt is explained
            # halted only because a halt-action rule fired
            assert set(out["rules_halted"]) <= {"quarantine_rate", "row_count", "partition_date_matches"}
        else:
            assert proc.returncode == 0 and out["status"] == "published"
            assert out["landed_rows"] == out["validated_rows"] + out["quarantined_rows"]
        outcomes[ds] = out["status"]
    assert sorted(outcomes.values()).count("halted") == 2
