"""Keep the README true: every `pipelines ...` command it shows runs as documented."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys

from pipelines.core import catalog
from pipelines.core.settings import PROJECT_ROOT

README = PROJECT_ROOT / "README.md"


def readme_blocks() -> list[list[str]]:
    """The README's bash blocks, as their stripped lines (trailing ``# comment`` kept)."""
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S)
    return [[ln.strip() for ln in b.splitlines() if ln.strip()] for b in blocks]


def shadow_block() -> list[str]:
    """The shadow walkthrough's block (the one that adds a shadow), run in order by its own test."""
    (block,) = [b for b in readme_blocks() if any(ln.startswith("pipelines shadow add ") for ln in b)]
    return block


def readme_lines(prefix: str) -> list[str]:
    """Lines of the README's bash blocks (but the shadow walkthrough's) that start with ``prefix``."""
    shadow = shadow_block()
    return [ln for b in readme_blocks() if b != shadow for ln in b if ln.startswith(prefix + " ")]


def command(line: str) -> str:
    return line.split("  #")[0].strip()


def run_pipelines(line: str, root, timeout: int) -> tuple[list[str], subprocess.CompletedProcess]:
    """Run one README ``pipelines ...`` line against a storage root, as a user would."""
    args = shlex.split(command(line))[1:]
    proc = subprocess.run(
        [sys.executable, "-m", "pipelines", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PIPELINES_DATA_ROOT": str(root)},
        cwd=PROJECT_ROOT,
        timeout=timeout,
    )
    assert "Traceback" not in proc.stderr, line
    return args, proc


RETRAINING = ("pipelines train", "pipelines gate", "pipelines rollback", "pipelines card")
DRIFT = ("pipelines drift", "pipelines score", "pipelines lineage")


def expected_exit(line: str) -> int | None:
    m = re.search(r"#\s*exit (\d+)", line)
    return int(m.group(1)) if m else None


def test_readme_retraining_commands_run(jan_root):
    """On a validated January: train, gate (promote), train --force, gate (exit 4), rollback (exit 5), then
    the two versions' model cards: the champion's, and the rejected one's as JSON."""
    lines = [ln for ln in readme_lines("pipelines") if ln.startswith(RETRAINING)]
    assert len(lines) == 7
    for line in lines:
        args, proc = run_pipelines(line, jan_root, timeout=600)
        assert proc.returncode == (expected_exit(line) or 0), (line, proc.stderr[-800:])
        if "--json" in args:
            out = json.loads(proc.stdout)
            assert out.get("version") or out.get("candidate")
        if args[0] == "card":
            if "--json" in args:
                assert out["status"] == "rejected by the gate" and "min_change:roc_auc" in out["gate"]["failed"]
            else:
                assert proc.stdout.startswith("# Model card: flights_delay v1 (champion)")


def test_readme_drift_commands_run(seasons_root):
    """With a January champion: January quiet, 2013-07-01 fires, the week after is held by the cooldown."""
    lines = [ln for ln in readme_lines("pipelines") if ln.startswith(DRIFT)]
    assert len(lines) == 5
    first_train = next(ln for ln in readme_lines("pipelines") if ln.startswith("pipelines train"))
    first_gate = next(ln for ln in readme_lines("pipelines") if ln.startswith("pipelines gate"))
    for line in (first_train, first_gate):
        assert run_pipelines(line, seasons_root, timeout=600)[1].returncode == 0, line
    for line in lines:
        args, proc = run_pipelines(line, seasons_root, timeout=600)
        assert proc.returncode == 0, (line, proc.stderr[-800:])
        out = json.loads(proc.stdout)
        if args[0] == "lineage":
            assert out["consistent"] and out["model_version"]["version"] == "1" and out["scores"]["rows"] == 966
            assert out["gate"]["decision"] == "promoted" and out["training"]["window"].startswith("2013-01-01..")
            continue
        if args[0] == "score":
            assert out["model_version"] == "1" and out["planned"] == out["committed"] == out["scored"] == 4
            scored = catalog.scores_file(args[args.index("--model") + 1], args[args.index("--ds") + 1])
            assert out["rows"] == 966 and out["output"].endswith("/" + scored)
            continue
        if "--to" in args:
            assert out["fired"] == [] and len(out["days"]) == 7
            assert all(d["reason"].startswith("cooldown") for d in out["days"])
        else:
            fired = re.search(r"policy_fired: (true|false)", line).group(1) == "true"
            assert out["policy_fired"] is fired, (line, out["reason"])
            assert bool(out["drifted_features"]) is fired


def test_readme_pipelines_commands_run(data_root):
    lines = [ln for ln in readme_lines("pipelines") if not ln.startswith(RETRAINING + DRIFT)]
    assert len(lines) >= 3
    for line in lines:
        args, proc = run_pipelines(line, data_root, timeout=300)
        if "--json" in args:
            out = json.loads(proc.stdout)
            if "--to" in args:
                expected = 3 if out["halted"] else 0
                assert out["published"] + out["halted"] + out["missing"] == len(out["partitions"])
            else:
                expected = {"published": 0, "halted": 3}[out["status"]]
            assert proc.returncode == expected, (line, proc.stderr[-500:])
        else:
            assert proc.returncode == 0, (line, proc.stderr[-500:])


def test_readme_dvc_commands_are_the_tested_ones():
    assert [command(ln) for ln in readme_lines("dvc")] == ["dvc repro", "dvc metrics show"]  # run by test_dvc_repro.py


def test_readme_make_targets_exist():
    makefile = (PROJECT_ROOT / "Makefile").read_text()
    for line in readme_lines("make"):
        target = command(line).split()[1]
        assert re.search(rf"^{re.escape(target)}:", makefile, flags=re.M), target


def test_readme_shadow_commands_run(jan_root):
    """A champion through 2013-01-20, version 2 through 01-24: add it in shadow, score both lanes, judge, status,
    retire."""
    from pipelines.core.config import load_project
    from pipelines.training.gate import run_gate
    from pipelines.training.train import train_challenger

    project = load_project("flights_delay")
    train_challenger(project, "2013-01-20")
    assert run_gate(project)["promoted"]
    assert str(train_challenger(project, "2013-01-24")["version"]) == "2"
    outputs = {}
    for line in shadow_block():
        args, proc = run_pipelines(line, jan_root, timeout=600)
        assert proc.returncode == (expected_exit(line) or 0), (line, proc.stderr[-800:])
        outputs[" ".join(args[:2]) + (" shadow" if "--shadow" in args else "")] = json.loads(proc.stdout)
    assert outputs["shadow add"]["version"] == "2"
    shadow, champion = outputs["score --model shadow"], outputs["score --model"]
    assert (
        shadow["lane"] == "shadow"
        and shadow["model_version"] == "2"
        and "/shadow/flights_delay/v=2/" in shadow["output"]
    )
    assert champion["lane"] == "champion" and champion["model_version"] == "1" and shadow["rows"] == champion["rows"]
    judged = outputs["shadow judge"]
    assert judged["champion"] == "1" and [d["verdict"] for d in judged["shadows"]] == ["wait"]
    (status,) = outputs["shadow status"]["shadows"]
    assert status["shadow"] == "2" and status["days"] == ["2013-01-28"] and status["why"] == "too few paired days"
    assert status["shadow_metrics"]["roc_auc"] > 0.5 and status["champion_metrics"]["roc_auc"] > 0.5
    assert outputs["shadow retire"] == {"version": "2", "reason": "seen enough"}
