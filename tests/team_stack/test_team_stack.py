"""Training against the team stack: the model lands in S3, its alias in PostgreSQL, and it loads."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import torch

from tests.conftest import QUICK, cli_env, compose_config
from tests.team_stack.services import BUCKET, DATABASE, DB_USER, Stack
from vision_exp.data.datamodule import build_data

pytestmark = [pytest.mark.slow, pytest.mark.services]
NAME = "vision-classifier"


def run_cli(module: str, args: list[str], workdir: Path, tracking_uri: str) -> str:
    """The CLI as a team member runs it: only the server's URI, no database or S3 secret."""
    env = {k: v for k, v in cli_env(workdir).items() if not k.startswith("AWS_")}
    env["MLFLOW_TRACKING_URI"] = tracking_uri
    result = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def test_training_registers_to_postgres_and_s3_and_loads_by_alias(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3  # dev extras, imported once the fixture has checked they are installed
    import psycopg2

    for key in [key for key in os.environ if key.startswith("AWS_")]:
        monkeypatch.delenv(key)  # artifacts go through the server: clients need no S3 keys
    overrides = [*QUICK, "mlflow=server", "mlflow.log_model=true", "registry=champion_challenger"]
    log = run_cli("vision_exp.train", overrides, tmp_path, stack.tracking_uri)
    assert "promoted to @staging" in log
    run_cli(
        "vision_exp.registry", ["promote", NAME, "1", "production"], tmp_path, stack.tracking_uri
    )

    # The alias is a row in PostgreSQL.
    connection = psycopg2.connect(
        host="127.0.0.1", port=stack.db_port, user=DB_USER, password=stack.db_password,
        dbname=DATABASE,
    )  # fmt: skip
    with connection, connection.cursor() as cursor:
        cursor.execute(
            "SELECT alias, version FROM registered_model_aliases WHERE name = %s", (NAME,)
        )
        assert dict(cursor.fetchall()) == {"staging": 1, "production": 1}
    connection.close()

    # The model's files are objects in the bucket, written through the server's proxy.
    s3 = boto3.client(
        "s3", endpoint_url=stack.s3_endpoint, aws_access_key_id=stack.s3_keys[0],
        aws_secret_access_key=stack.s3_keys[1], region_name="us-east-1",
    )  # fmt: skip
    keys = [item["Key"] for item in s3.list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert any(key.endswith("/MLmodel") for key in keys), keys
    assert any("/report/" in key for key in keys), keys

    # The alias loads with mlflow.pytorch and scores the test split as the run measured it.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", stack.tracking_uri)
    mlflow.set_tracking_uri(stack.tracking_uri)
    model = mlflow.pytorch.load_model(f"models:/{NAME}@production")
    cfg = compose_config(*QUICK)
    data = build_data(cfg.dataset, cfg.seed)
    with torch.no_grad():
        predictions = model(data.augment.normalize(data.test.images)).argmax(1)
    accuracy = (predictions == data.test.labels).float().mean().item()
    version = mlflow.MlflowClient().get_model_version(NAME, "1")
    run = mlflow.MlflowClient().get_run(version.run_id)
    assert accuracy == pytest.approx(run.data.metrics["test_acc"], abs=1e-6)
    # No credential reached the run.
    logged = " ".join([*run.data.params.values(), *run.data.tags.values()])
    assert stack.db_password not in logged and stack.s3_keys[1] not in logged
