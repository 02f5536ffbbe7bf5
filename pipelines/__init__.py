"""ML retraining and batch-scoring pipelines: the library.

All logic lives here; Airflow DAGs (``dags/``), the ``pipelines`` CLI and the
``dvc.yaml`` stages are thin callers. Rooms: ``core`` (what every stage
shares: settings, config, errors, partitions, the storage catalog and adapter,
MLflow access, contracts, features), one sub-package per stage (``ingest``,
``training``, ``monitoring``, ``scoring``), ``lineage`` and ``cli``. A stage
imports only the core and itself; ``ARCHITECTURE.md`` in the repository says
why and what each room holds.

Importing it is cheap and never imports Airflow, MLflow, Great Expectations or
Evidently: each step imports what it uses, lazily, because every Airflow task
is a fresh process. Ops tooling (the demo, the prod stack launcher, fault
injection) lives beside it in ``pipelines_ops`` and is never imported here.
"""

__version__ = "0.1.0"
