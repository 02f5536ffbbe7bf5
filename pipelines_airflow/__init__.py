"""The product's Airflow side that Airflow imports by dotted path, outside ``dags/``.

``dags/`` holds the DAG files and their wiring; the DAG processor and the
task processes import it from the DAGs folder. The triggerer does not, so
what it runs (the deadline alerts' callback) lives in this installed package,
beside the alert delivery the DAGs use. The library (``pipelines/``) never
imports it: it reaches the delivery through the ``pipelines.alerts`` entry
point.
"""
