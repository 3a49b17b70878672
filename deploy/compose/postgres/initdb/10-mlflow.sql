-- Runs once, when the PostgreSQL volume is first initialised (docker-entrypoint-initdb.d):
-- the MLflow tracking server keeps its runs and registry in a database of its own.
CREATE DATABASE mlflow;
