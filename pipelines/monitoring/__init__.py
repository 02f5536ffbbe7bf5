"""Monitoring: each validated partition against the champion (drift, live metrics) and the retraining policy.

The drift DAG calls :func:`~pipelines.monitoring.drift.run_drift_step`.
"""
