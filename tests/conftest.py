"""Shared fixtures: isolated MLflow stores, the real CLI in a subprocess, composed configs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import mlflow
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

import vision_exp.config  # noqa: F401  (registers schemas)
from vision_exp.config.paths import CONFIG_DIR
from vision_exp.data import sources

REPO_ROOT = Path(__file__).resolve().parent.parent
# Small, fast and deterministic: every CLI test starts from these and adds its own overrides.
QUICK = ("experiment=digits", "debug=fast", "trainer.deterministic=true")


def cli_env(workdir: Path, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}
    env.update(
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")])),
        MLFLOW_TRACKING_URI=f"sqlite:///{workdir / 'mlflow.db'}",
        HYDRA_FULL_ERROR="0",
        PYTHONUNBUFFERED="1",
        **extra,
    )
    env.pop("HYDRA_FULL_ERROR")
    return env


def run_module(
    module: str,
    args: Sequence[str],
    workdir: Path,
    check: bool = True,
    timeout: float = 300,
    **env: str,
) -> subprocess.CompletedProcess[str]:
    """``python -m MODULE ARGS`` in ``workdir``, as a user would type it."""
    result = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=workdir,
        env=cli_env(workdir, **env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{module} {' '.join(args)} exited {result.returncode}\n"
            f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
        )
    return result


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty, fully migrated MLflow sqlite store: creating one costs ~10 s of migrations, copying
    it a few milliseconds."""
    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    mlflow.MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture(scope="session")
def digits_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The digits split as ``dataset.root=data`` caches it, so runs skip importing scikit-learn."""
    root = tmp_path_factory.mktemp("data-template")
    sources.digits(cache_dir=str(root))
    return root / "digits"


@pytest.fixture
def workdir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mlflow_template: Path, digits_cache: Path
) -> Iterator[Path]:
    """A scratch working directory with its own MLflow store and the digits cache under ./data,
    also for in-process runs."""
    shutil.copy(mlflow_template, tmp_path / "mlflow.db")
    shutil.copytree(digits_cache, tmp_path / "data" / "digits")
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    yield tmp_path
    while mlflow.active_run() is not None:
        mlflow.end_run()


def compose_config(*overrides: str) -> DictConfig:
    with initialize_config_dir(str(CONFIG_DIR)):
        return compose("train", overrides=list(overrides))


def mlflow_runs(workdir: Path, experiment: str = "digits") -> list[mlflow.entities.Run]:
    client = mlflow.MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    return list(client.search_runs([found.experiment_id], order_by=["attributes.start_time ASC"]))
