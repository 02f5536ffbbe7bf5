"""Keep the README true: every `pipelines ...` command it shows runs as documented."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys

from pipelines.settings import PROJECT_ROOT

README = PROJECT_ROOT / "README.md"


def readme_commands(prefix: str) -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S)
    lines = [ln.split("  #")[0].strip() for b in blocks for ln in b.splitlines()]
    return [ln for ln in lines if ln.startswith(prefix + " ")]


RETRAINING = ("pipelines train", "pipelines gate", "pipelines rollback")


def expected_exit(line: str) -> int | None:
    m = re.search(r"#\s*exit (\d+)", line)
    return int(m.group(1)) if m else None


def readme_lines(prefix: str) -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S)
    return [ln.strip() for b in blocks for ln in b.splitlines() if ln.strip().startswith(prefix + " ")]


def test_readme_retraining_commands_run(jan_root):
    """On a validated January: train, gate (promote), train --force, gate (exit 4), rollback (exit 5)."""
    lines = [ln for ln in readme_lines("pipelines") if ln.startswith(RETRAINING)]
    assert len(lines) == 5
    env = {**os.environ, "PIPELINES_DATA_ROOT": str(jan_root)}
    for line in lines:
        args = shlex.split(line.split("  #")[0])[1:]
        proc = subprocess.run(
            [sys.executable, "-m", "pipelines", *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=PROJECT_ROOT,
            timeout=600,
        )
        assert "Traceback" not in proc.stderr, line
        assert proc.returncode == (expected_exit(line) or 0), (line, proc.stderr[-800:])
        if "--json" in args:
            out = json.loads(proc.stdout)
            assert out.get("version") or out.get("candidate")


def test_readme_pipelines_commands_run(data_root):
    commands = [c for c in readme_commands("pipelines") if not c.startswith(RETRAINING)]
    assert len(commands) >= 3
    env = {**os.environ, "PIPELINES_DATA_ROOT": str(data_root)}
    for command in commands:
        args = shlex.split(command)[1:]
        proc = subprocess.run(
            [sys.executable, "-m", "pipelines", *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=PROJECT_ROOT,
            timeout=300,
        )
        assert "Traceback" not in proc.stderr, command
        if "--json" in args:
            out = json.loads(proc.stdout)
            if "--to" in args:
                expected = 3 if out["halted"] else 0
                assert out["published"] + out["halted"] + out["missing"] == len(out["partitions"])
            else:
                expected = {"published": 0, "halted": 3}[out["status"]]
            assert proc.returncode == expected, (command, proc.stderr[-500:])
        else:
            assert proc.returncode == 0, (command, proc.stderr[-500:])


def test_readme_dvc_commands_are_the_tested_ones():
    assert readme_commands("dvc") == ["dvc repro", "dvc metrics show"]  # run by test_dvc_repro.py


def test_readme_make_targets_exist():
    makefile = (PROJECT_ROOT / "Makefile").read_text()
    for command in readme_commands("make"):
        target = command.split()[1]
        assert re.search(rf"^{re.escape(target)}:", makefile, flags=re.M), target
