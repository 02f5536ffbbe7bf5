"""`dvc repro` runs the pipeline offline in a fresh checkout, and a second repro has nothing to do."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.core import catalog
from pipelines.core.settings import PROJECT_ROOT

pytestmark = pytest.mark.integration


def test_dvc_repro_in_a_temporary_checkout(tmp_path):
    repo = tmp_path / "checkout"
    repo.mkdir()
    for name in ("pipelines", "pipelines_ops", "configs", "data_contracts"):  # dvc.yaml's code deps are both
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
    # What the stages wrote is where the catalog says it is.
    data = repo / "data"
    assert (data / catalog.validation_report("flights", "2013-01-31")).is_file()
    assert (data / catalog.training_set_record("flights_delay", "2013-01-31")).is_file()

    metrics = run("dvc", "metrics", "show", "--json")
    assert metrics.returncode == 0 and "roc_auc" in metrics.stdout
    second = run("dvc", "repro")
    assert second.returncode == 0 and "didn't change" in (second.stdout + second.stderr).lower()


def test_dvc_stage_paths_are_the_catalogs():
    """dvc.yaml names storage folders by hand: they must be the catalog's keys under the default data root."""
    import yaml

    spec = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())
    [v] = spec["vars"]

    def expand(path: str) -> str:
        for name, value in v.items():
            path = path.replace(f"${{{name}}}", str(value))
        return path

    stages = spec["stages"]
    outs = {
        name: [expand(o if isinstance(o, str) else next(iter(o))) for o in st.get("outs", [])]
        for name, st in stages.items()
    }
    deps = {name: [expand(d) for d in st.get("deps", [])] for name, st in stages.items()}
    dataset, model, end_ds = v["dataset"], v["model"], v["end_ds"]
    assert outs["seed"] == [f"data/{catalog.landing_table(dataset)}"]
    assert f"data/{catalog.validated_table(dataset)}" in outs["validate"]
    assert f"data/{catalog.quarantine_dir(dataset, end_ds).rsplit('/', 1)[0]}" in outs["validate"]
    assert outs["train"] == [f"data/{catalog.training_dir(model, end_ds)}"]
    assert f"data/{catalog.validated_table(dataset)}" in deps["train"]
    assert f"data/{catalog.training_dir(model, end_ds)}" in deps["evaluate"]
    for stage, paths in deps.items():  # every code and config dependency exists
        for path in paths:
            if not path.startswith("data/"):
                assert (PROJECT_ROOT / path).exists(), (stage, path)
