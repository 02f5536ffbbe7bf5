-- The MLflow stores beside Airflow's metadata database (created by POSTGRES_DB).
CREATE DATABASE mlflow;
CREATE DATABASE mlflow_auth;
