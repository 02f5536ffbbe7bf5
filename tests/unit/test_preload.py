"""The libraries the local profile's Airflow workers import before forking tasks (``pipelines_ops.preload``).

Python's forkserver swallows an ``ImportError`` from a preload module and
dies on any other exception, taking every task with it; a misspelt name would
silently lose the preload. So: every listed name resolves, none is this
project's own code (a worker outlives a deploy), and a failing import is
logged and returned, never raised.
"""

from __future__ import annotations

import gc
import importlib.util
import os
import subprocess
import sys
import textwrap

import pytest

from pipelines.core.settings import PROJECT_ROOT
from pipelines_ops import AIRFLOW_PRELOAD_ENV


def _preload_module():
    # Importing it imports every listed library once (this session imports them anyway); it ends with
    # gc.freeze(), for a forkserver: undone here, so the test session collects as before.
    import pipelines_ops.preload as preload

    gc.unfreeze()
    return preload


def test_every_preloaded_name_is_an_installed_third_party_module():
    preload = _preload_module()
    assert preload.MODULES, "nothing preloaded"
    for name in preload.MODULES:
        assert importlib.util.find_spec(name) is not None, f"{name} is not installed"
        assert not name.split(".")[0].startswith("pipelines"), f"{name}: this project's code must not be preloaded"


def test_the_airflow_settings_name_this_module_and_the_forkserver():
    assert AIRFLOW_PRELOAD_ENV["AIRFLOW__SCHEDULER__MP_START_METHOD"] == "forkserver"
    module = AIRFLOW_PRELOAD_ENV["AIRFLOW__SCHEDULER__MP_FORKSERVER_PRELOAD"]
    assert importlib.util.find_spec(module) is not None
    assert module == _preload_module().__name__


def test_a_library_that_fails_to_import_is_logged_and_returned_never_raised(tmp_path, monkeypatch, caplog):
    (tmp_path / "breaks_on_import.py").write_text("raise RuntimeError('broken on purpose')\n")
    (tmp_path / "exits_on_import.py").write_text("raise SystemExit(3)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    preload = _preload_module()
    import sqlalchemy.orm

    def broken_mappers():
        raise RuntimeError("a mapper that cannot be configured")

    monkeypatch.setattr(sqlalchemy.orm, "configure_mappers", broken_mappers)  # nor the session's mappers touched
    failed = preload.preload(("json", "no_such_module_anywhere", "breaks_on_import", "exits_on_import"))
    assert failed == [
        "no_such_module_anywhere",
        "breaks_on_import",
        "exits_on_import",
        "sqlalchemy.orm.configure_mappers",
    ]
    assert "breaks_on_import not imported (RuntimeError: broken on purpose)" in caplog.text
    assert "mappers not configured (RuntimeError: a mapper that cannot be configured)" in caplog.text


def test_a_forked_child_gets_its_own_evidently_event_loop():
    """Evidently makes an event loop at import; a task forked from a worker must not share its epoll descriptor."""
    _preload_module()
    from evidently.legacy.utils import sync

    inherited = sync._loop
    pid = os.fork()
    if pid == 0:  # the child: a fresh, open loop, and the inherited one closed (its own descriptors only)
        os._exit(0 if sync._loop is not inherited and not sync._loop.is_closed() and inherited.is_closed() else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert sync._loop is inherited and not inherited.is_closed(), "the parent's loop must be left alone"


@pytest.mark.integration
def test_a_forkserver_preloading_it_hands_its_children_the_libraries(tmp_path):
    """What Airflow's scheduler does with the settings: its workers start with the libraries imported."""
    # A file, not ``-c``: forkserver children import the main module to find the function they run.
    script = tmp_path / "fork_children.py"
    script.write_text(
        textwrap.dedent(
            """
            import multiprocessing, sys

            def imported(names):
                import gc
                # The preloaded heap is frozen: out of the collector's sight in every child.
                return [n for n in names if n in sys.modules] + (["frozen"] if gc.get_freeze_count() > 100000 else [])

            if __name__ == "__main__":
                multiprocessing.set_start_method("forkserver")
                multiprocessing.set_forkserver_preload(["pipelines_ops.preload"])
                names = ["great_expectations", "evidently", "mlflow", "xgboost"]
                with multiprocessing.Pool(1) as pool:
                    print(",".join(pool.apply(imported, (names,))))
            """
        )
    )
    proc = subprocess.run([sys.executable, str(script)], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().split(",") == ["great_expectations", "evidently", "mlflow", "xgboost", "frozen"]
