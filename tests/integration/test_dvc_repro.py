"""`dvc repro` runs the pipeline offline in a fresh checkout, and a second repro has nothing to do."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.settings import PROJECT_ROOT

pytestmark = pytest.mark.integration


def test_dvc_repro_in_a_temporary_checkout(tmp_path):
    repo = tmp_path / "checkout"
    repo.mkdir()
    for name in ("pipelines", "configs", "data_contracts"):
        shutil.copytree(PROJECT_ROOT / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", ".gitignore"):
        shutil.copy(PROJECT_ROOT / name, repo / name)
    bin_dir = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        # the checkout's own folders (the installed package points at the main checkout)
        "PIPELINES_DATA_ROOT": str(repo / "data"),
        "PIPELINES_CONFIG_DIR": str(repo / "configs"),
        "PIPELINES_CONTRACTS_DIR": str(repo / "data_contracts"),
        "PIPELINES_CODE_VERSION": "dvc-test",
    }
    env.pop("MLFLOW_TRACKING_URI", None)

    def run(*cmd: str) -> subprocess.CompletedProcess:
        return subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=900)

    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"], ["dvc", "config", "core.analytics", "false"]):
        assert run(*cmd).returncode == 0
    first = run("dvc", "repro")
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    lock = (repo / "dvc.lock").read_text()
    assert "train:" in lock and "evaluate:" in lock

    train = json.loads((repo / "data/reports/flights_delay-train.json").read_text())
    ts_hash = [line for line in lock.splitlines() if "ds=2013-01-31" in line]
    assert ts_hash and train["version"] == "1"
    gate = json.loads((repo / "data/reports/flights_delay-gate.json").read_text())
    assert gate["passed"] and not gate["promoted"]  # a dry run never moves the champion
    validated = json.loads((repo / "data/reports/flights-validate.json").read_text())
    assert validated["published"] == 31 and validated["halted"] == 0

    metrics = run("dvc", "metrics", "show", "--json")
    assert metrics.returncode == 0 and "roc_auc" in metrics.stdout
    second = run("dvc", "repro")
    assert second.returncode == 0 and "didn't change" in (second.stdout + second.stderr).lower()
