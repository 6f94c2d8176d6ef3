"""Registry test fixtures: a migrated MLflow store per test (copied, since migrating a fresh sqlite
file takes seconds) and runs that log a real, tiny pytorch model with chosen metrics."""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path

import mlflow
import pytest
import torch
from torch import nn

from vision_exp.registry import ModelRegistry
from vision_exp.tracking.model_logging import log_model

EXAMPLE = torch.arange(8, dtype=torch.float32).reshape(2, 1, 2, 2) / 8


def tiny_model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 3))


def log_run(
    metrics: Mapping[str, float], seed: int = 0, dataset: str = "digits", experiment: str = "reg"
) -> tuple[str, str]:
    """A finished run like training leaves: tags, test metrics, a logged model. (run_id, uri)."""
    mlflow.set_experiment(experiment)
    with mlflow.start_run(tags={"dataset": dataset, "model": "linear"}) as run:
        mlflow.log_metrics(dict(metrics))
        uri = log_model(tiny_model(seed), EXAMPLE, ["a", "b", "c"])
    return run.info.run_id, uri


def add_version(
    registry: ModelRegistry, name: str, test_acc: float, seed: int = 0, **tags: str
) -> str:
    run_id, uri = log_run({"test_acc": test_acc, "test_loss": 1 - test_acc}, seed)
    return str(registry.register(name, run_id, uri, tags=tags).version)


@pytest.fixture(scope="session")
def migrated_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "mlflow.db"
    mlflow.MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def store(tmp_path: Path, migrated_store: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Like ``workdir``: a scratch directory whose ``mlflow.db`` is the default store."""
    shutil.copy(migrated_store, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    yield tmp_path
    while mlflow.active_run() is not None:
        mlflow.end_run()


@pytest.fixture
def registry(store: Path) -> ModelRegistry:
    return ModelRegistry(f"sqlite:///{store / 'mlflow.db'}", lock_timeout=20)
