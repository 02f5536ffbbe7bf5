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
themselves, as without the preload). Nothing here starts a thread or opens a
connection, so forking after it is safe. It ends with ``gc.freeze()`` (see
the end of the module): what it imported stays shared with every fork.
"""

from __future__ import annotations

import gc
import importlib
import logging
import os

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
        except Exception as error:  # noqa: BLE001 - see the module doc: this must never raise
            failed.append(name)
            kind = type(error).__name__
            log.warning("preload: %s not imported (%s: %s); tasks import it themselves", name, kind, error)
    logging.getLogger("great_expectations.data_context.types.base").setLevel(logging.WARNING)
    try:
        # SQLAlchemy configures every mapped class on a process's first query (2.3 s here, Airflow's models
        # included); done once here, not by each task that opens the MLflow store.
        from sqlalchemy.orm import configure_mappers

        configure_mappers()
    except Exception as error:  # noqa: BLE001 - see the module doc: this must never raise
        failed.append("sqlalchemy.orm.configure_mappers")
        log.warning("preload: SQLAlchemy's mappers not configured (%s: %s)", type(error).__name__, error)
    return failed


preload()
# The libraries' objects live as long as the process: out of the collector's sight. Without this, every
# full collection in a task walks them (0.6 s here) and writes to their pages, which the fork shared:
# each task would copy the whole preloaded heap. Frozen before the fork, they stay shared and unwalked.
gc.freeze()
