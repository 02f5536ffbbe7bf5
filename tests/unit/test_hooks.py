"""Step hooks: named points inside long steps, inert unless PIPELINES_STEP_HOOK plugs an observer in."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from pipelines.core import hooks
from pipelines.core.errors import ConfigError
from pipelines_ops import faults

CALLS: list[str] = []


def record(point: str) -> None:
    """A hook for these tests: remembers every point reached."""
    CALLS.append(point)


@pytest.fixture(autouse=True)
def _clean(monkeypatch):
    for name in (hooks.ENV, "PIPELINES_FAULT_HOLD", "PIPELINES_FAULT_RELEASE"):
        monkeypatch.delenv(name, raising=False)
    CALLS.clear()
    hooks._load.cache_clear()
    yield
    hooks._load.cache_clear()


def test_a_point_does_nothing_without_a_hook():
    hooks.point("chunk_write:0")
    hooks.point("publish_data")
    assert CALLS == []


def test_the_configured_hook_is_called_with_each_point(monkeypatch):
    monkeypatch.setenv(hooks.ENV, f"{__name__}:record")
    for name in ("chunk_write:0", "chunk_commit:0", "publish_data", "publish_manifest"):
        hooks.point(name)
    assert CALLS == ["chunk_write:0", "chunk_commit:0", "publish_data", "publish_manifest"]


@pytest.mark.parametrize(
    "spec",
    [
        "pipelines_ops.faults",
        ":hold",
        "pipelines_ops.faults:",
        "no_such_module_xyz:hold",
        "pipelines_ops:nope",
        "os:sep",  # not a function
        "this_is:not a module",
    ],
)
def test_a_bad_hook_is_a_config_error_before_any_point(monkeypatch, spec):
    monkeypatch.setenv(hooks.ENV, spec)
    with pytest.raises(ConfigError, match=hooks.ENV):
        hooks.check()  # what a step calls before its work
    with pytest.raises(ConfigError, match=hooks.ENV):
        hooks.point("publish_data")


def test_a_hook_module_that_fails_to_import_is_a_config_error(monkeypatch, tmp_path):
    (tmp_path / "broken_hook_mod.py").write_text("raise RuntimeError('boom at import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv(hooks.ENV, "broken_hook_mod:hold")
    with pytest.raises(ConfigError, match="boom at import"):
        hooks.check()


def test_the_fault_hook_is_what_the_kill_tests_plug_in():
    assert faults.HOOK == "pipelines_ops.faults:hold"
    assert hooks._load(faults.HOOK) is faults.hold


def test_the_fault_hook_parks_only_at_the_named_points(monkeypatch, tmp_path, capsys):
    release = tmp_path / "release"
    monkeypatch.setenv("PIPELINES_FAULT_HOLD", "chunk_commit:2,publish_data")
    monkeypatch.setenv("PIPELINES_FAULT_RELEASE", str(release))
    release.touch()  # released already: the hold announces itself and returns
    faults.hold("chunk_commit:1")
    faults.hold("chunk_commit:20")
    assert capsys.readouterr().err == ""
    faults.hold("chunk_commit:2")
    faults.hold("publish_data")
    assert capsys.readouterr().err.splitlines() == ["HOLD chunk_commit:2", "HOLD publish_data"]


def test_a_hold_without_the_hook_never_parks_a_process(tmp_path):
    """PIPELINES_FAULT_HOLD alone is inert: only the hook makes the library park."""
    release = tmp_path / "release"
    code = "from pipelines.core import hooks; hooks.point('publish_data'); print('passed')"
    base = {k: v for k, v in os.environ.items() if k != hooks.ENV}
    env = {**base, "PIPELINES_FAULT_HOLD": "publish_data", "PIPELINES_FAULT_RELEASE": str(release)}
    inert = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert inert.returncode == 0 and inert.stdout.strip() == "passed" and "HOLD" not in inert.stderr

    log = tmp_path / "stderr.log"
    with open(log, "w") as err:
        held = subprocess.Popen(
            [sys.executable, "-c", code],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env={**env, hooks.ENV: faults.HOOK},
        )
    try:
        deadline = time.monotonic() + 60
        while "HOLD publish_data" not in log.read_text() and time.monotonic() < deadline:
            assert held.poll() is None, f"exited {held.returncode} before the hold: {log.read_text()}"
            time.sleep(0.05)
        assert "HOLD publish_data" in log.read_text()
        time.sleep(0.3)
        assert held.poll() is None, "the hooked process must stay parked until released"
        release.touch()
        out, _ = held.communicate(timeout=60)
    finally:
        if held.poll() is None:
            held.kill()
    assert held.returncode == 0 and out.strip() == "passed"
