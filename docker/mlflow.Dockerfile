# MLflow's image plus the PostgreSQL driver (SQLAlchemy 2 needs postgresql+psycopg2://) and boto3
# for the S3 artifact store. Keep the MLflow version in step with pyproject.toml.
FROM ghcr.io/mlflow/mlflow:v3.17.2
RUN pip install --no-cache-dir "psycopg2-binary>=2.9" "boto3>=1.34"
