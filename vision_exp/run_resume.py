"""Resuming a run in its own MLflow run: the checks before anything starts, and the command an
interrupted run prints for continuing it."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import mlflow
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from mlflow.exceptions import MlflowException
from omegaconf import DictConfig

from vision_exp.engine.checkpoint import LAST
from vision_exp.engine.resume import ResumePoint
from vision_exp.errors import RunInterrupted, TrackingError
from vision_exp.tracking.mlflow_run import TrackedRun
from vision_exp.tracking.redact import redact_text
from vision_exp.tracking.uri import resolve_tracking_uri


def check_resumable_run(cfg: DictConfig, resume: ResumePoint) -> None:
    """The checkpoint's MLflow run must be in this tracking store, or its metrics would be lost."""
    if resume.run_id is None:
        return
    uri = resolve_tracking_uri(cfg.mlflow.tracking_uri)
    try:
        mlflow.MlflowClient(uri).get_run(resume.run_id)
    except MlflowException as error:
        raise TrackingError(
            f"{resume.path} was logged to MLflow run {resume.run_id}, which is not in "
            f"{redact_text(uri)}: resume with the tracking URI the run used "
            "(mlflow.tracking_uri=... or $MLFLOW_TRACKING_URI)."
        ) from error


def resume_command(output_dir: Path) -> str:
    """The command that was run, with ``resume=`` pointing at this run's folder; for one job of a
    sweep, that job alone."""
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        argv = ["-m", "vision_exp.train", *HydraConfig.get().overrides.task]
    else:
        argv = sys.orig_argv[1:]
    kept = [arg for arg in argv if not arg.startswith("resume=")]
    return shlex.join(["python", *kept, f"resume={output_dir}"])


def interrupted_message(stop: RunInterrupted, run: TrackedRun, output_dir: Path) -> str:
    checkpoint = output_dir / "checkpoints" / LAST
    if checkpoint.is_file():
        advice = f"Resume from its last completed epoch with:\n  {resume_command(output_dir)}"
    else:
        advice = (
            "No checkpoint was written (no epoch had completed, or trainer.save_checkpoints=false),"
            " so there is nothing to resume: start the run again."
        )
    return f"{stop} MLflow run {run.run_id} is marked KILLED. {advice}"
