"""Ingest: a day's landed files -> validated rows + quarantine + report, or a halt.

The ingest DAG calls :mod:`~pipelines.ingest.steps` (``landing_ready``,
``run_validation``); the work is :func:`~pipelines.ingest.validation.validate_partition`.
"""
