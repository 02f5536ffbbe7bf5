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


def test_readme_pipelines_commands_run(data_root):
    commands = readme_commands("pipelines")
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
            expected = {"published": 0, "halted": 3}[out["status"]]
            assert proc.returncode == expected, (command, proc.stderr[-500:])
        else:
            assert proc.returncode == 0, (command, proc.stderr[-500:])


def test_readme_make_targets_exist():
    makefile = (PROJECT_ROOT / "Makefile").read_text()
    for command in readme_commands("make"):
        target = command.split()[1]
        assert re.search(rf"^{re.escape(target)}:", makefile, flags=re.M), target
