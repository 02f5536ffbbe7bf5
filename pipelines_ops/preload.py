"""The third-party libraries Airflow's task processes inherit already imported (the local profile).

Every Airflow task is a fresh process. Under the LocalExecutor it is forked
from a long-lived worker process, so whatever that worker has imported, the
task has for free. Airflow 3.3 lets the scheduler start its workers from a
``forkserver`` that imports a list of modules first:

    AIRFLOW__SCHEDULER__MP_START_METHOD=forkserver
    AIRFLOW__SCHEDULER__MP_FORKSERVER_PRELOAD=pipelines_ops.preload

This module is that list (``pipelines_ops.AIRFLOW_PRELOAD_ENV`` holds the two
settings; the demo and the UI test run Airflow with them). Importing it imports Great Expectations, Evidently,
MLflow, scikit-learn, XGBoost, pandas, pyarrow and DuckDB once, when the
scheduler starts its first worker (about 15 s here), instead of in each task
that needs them: an ingest task no longer pays about 5 s for Great
Expectations, a scoring task about 3 s for MLflow, scikit-learn and XGBoost.

Only third-party libraries are preloaded, never ``pipelines``: a worker
lives as long as the scheduler, and a preloaded copy of this project's code
would keep running after a deploy changed it. The libraries change only with
an install (``make setup``), after which Airflow is restarted anyway; task
code and DAG files are still imported fresh by each task.

Importing this module never raises: the forkserver would die on an
exception other than ``ImportError``, and with it every task. A library that
fails to import is logged and left to the tasks that need it (they import it
themselves, as without the preload). Nothing imported here opens a connection
or holds a lock; the one thread started is jemalloc's (pyarrow), which
handles fork. Evidently makes an asyncio event loop when imported: each
forked child gets its own (``_fresh_event_loops``), never the forkserver's
epoll descriptor. MLflow's exit hook that ends an open run does not run in
a task (Airflow's task process clears exit hooks): runs are ended by their
``with`` blocks. It ends with ``gc.freeze()`` (see
the end of the module): what it imported stays shared with every fork.
"""

from __future__ import annotations

import gc
import importlib
import logging
import os
import sys
import time

log = logging.getLogger(__name__)

#: What the task bodies import, heaviest first (seconds to import, measured here).
MODULES = (
    "great_expectations",  # 4.7 s: validate_partition, validate_shard
    "evidently",  # 4.5 s: check_drift
    "evidently.presets",
    "evidently.metrics",
    "mlflow",  # 1.7 s: train, gate, plan (scoring), drift
    "mlflow.sklearn",
    "mlflow.pyfunc",
    # The local profile's MLflow is a SQLite store: opening it imports SQLAlchemy's store and Alembic (3 s).
    "mlflow.store.tracking.sqlalchemy_store",
    "mlflow.store.model_registry.sqlalchemy_store",
    "alembic.script",
    "open_data_contract_standard.model",
    "pandas",
    "pyarrow",
    "pyarrow.parquet",
    "pyarrow.compute",
    "pyarrow.csv",
    "duckdb",
    "sklearn.pipeline",
    "sklearn.compose",
    "sklearn.preprocessing",
    "sklearn.impute",
    "sklearn.metrics",
    "xgboost",
    # What every task runs on, and the worker's own loop.
    "airflow.sdk",
    "airflow.sdk.execution_time.task_runner",
    "airflow.sdk.execution_time.supervisor",
    "airflow.executors.local_executor",
)


def preload(modules: tuple[str, ...] = MODULES) -> list[str]:
    """Import ``modules``; the names that failed (logged), never an exception."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    # Great Expectations logs each helper it registers at INFO while importing.
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    failed = []
    for name in modules:
        try:
            importlib.import_module(name)
        except (Exception, SystemExit) as error:  # noqa: BLE001 - see the module doc: this must never raise
            failed.append(name)
            kind = type(error).__name__
            log.warning("preload: %s not imported (%s: %s); tasks import it themselves", name, kind, error)
    logging.getLogger("great_expectations.data_context.types.base").setLevel(logging.WARNING)
    try:
        # SQLAlchemy configures every mapped class on a process's first query (2.3 s here, Airflow's models
        # included); done once here, not by each task that opens the MLflow store.
        from sqlalchemy.orm import configure_mappers

        configure_mappers()
    except (Exception, SystemExit) as error:  # noqa: BLE001 - see the module doc: this must never raise
        failed.append("sqlalchemy.orm.configure_mappers")
        log.warning("preload: SQLAlchemy's mappers not configured (%s: %s)", type(error).__name__, error)
    return failed


def _fresh_event_loops() -> None:
    """In a forked child: new event loops for the libraries that made one at import (a loop's epoll file
    descriptor and wake-up sockets would otherwise be one kernel object shared by every task)."""
    sync = sys.modules.get("evidently.legacy.utils.sync")  # Evidently's runner for its async calls
    if sync is None or not hasattr(sync, "_loop") or getattr(sync, "_thr", None) is None or sync._thr.is_alive():
        return
    import asyncio
    import threading

    inherited, sync._loop = sync._loop, asyncio.new_event_loop()
    sync._thr = threading.Thread(target=sync._loop.run_forever, name="Async Runner", daemon=True)
    inherited.close()  # closes this process's copies of the descriptors only


_started = time.monotonic()
_failed = preload()
os.register_at_fork(after_in_child=_fresh_event_loops)
# The libraries' objects live as long as the process: out of the collector's sight. Without this, every
# full collection in a task walks them (0.6 s here) and writes to their pages, which the fork shared:
# each task would copy the whole preloaded heap. Frozen before the fork, they stay shared and unwalked;
# the imports' own garbage is collected first, not frozen with them.
gc.collect()
gc.freeze()
# The forkserver's stderr is the scheduler's log: the line that says the preload took.
print(
    f"pipelines_ops.preload: {sum(m not in _failed for m in MODULES)}/{len(MODULES)} modules imported in "
    f"{time.monotonic() - _started:.1f} s, {gc.get_freeze_count()} objects frozen"
    + (f"; not imported: {', '.join(_failed)}" if _failed else ""),
    file=sys.stderr,
    flush=True,
)
