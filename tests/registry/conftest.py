"""Registry test fixtures: runs that log a real, tiny pytorch model with chosen metrics, and the
registry of the test's own store (``workdir``)."""

from __future__ import annotations

from collections.abc import Mapping
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


@pytest.fixture
def registry(workdir: Path) -> ModelRegistry:
    """The registry of ``workdir``'s store (the one the CLI in ``workdir`` uses too)."""
    return ModelRegistry(f"sqlite:///{workdir / 'mlflow.db'}", lock_timeout=20)
