"""ML retraining and batch-scoring pipelines.

The package holds all logic; Airflow DAGs, the ``pipelines`` CLI and the
``dvc.yaml`` stages are thin callers. Importing it is cheap and never imports
Airflow, MLflow, Great Expectations or Evidently: each step imports what it
uses, lazily, because every Airflow task is a fresh process.
"""

__version__ = "0.1.0"
