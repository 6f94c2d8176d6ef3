"""One training run from a composed config: config -> data -> model -> loop -> tracking."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import mlflow
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from vision_exp.config.saved import save_resolved
from vision_exp.config.targets import build
from vision_exp.config.validate import validate_config
from vision_exp.data.batches import num_train_batches
from vision_exp.data.datamodule import DataBundle, build_data
from vision_exp.distributed import (
    DistributedContext,
    check_same_job,
    scale_for_world,
    session,
    world_params,
)
from vision_exp.engine.acceleration import accelerate_data, accelerate_model, build_optimizer
from vision_exp.engine.interrupt import check_interrupt, interrupt_handling
from vision_exp.engine.resume import (
    RUN_ID_KEY,
    ResumePoint,
    copy_checkpoints,
    load_resume_point,
    restore,
)
from vision_exp.engine.runtime import configure_threads, seed_everything
from vision_exp.engine.trainer import EpochCallback, FitResult, Trainer
from vision_exp.errors import RunInterrupted
from vision_exp.evaluation.report import build_report, write_history, write_report
from vision_exp.registry.policy import apply_registry_policy
from vision_exp.run_resume import check_resumable_run, interrupted_message
from vision_exp.tracking.mlflow_run import NullRun, TrackedRun, git_commit, mlflow_run
from vision_exp.tracking.model_logging import log_model
from vision_exp.tracking.reachability import check_tracking_server
from vision_exp.tracking.redact import redact_text
from vision_exp.tuning.tags import trial_tags

log = logging.getLogger(__name__)


def model_name(model_cfg: DictConfig) -> str:
    """``resnet18``, ``resnet50``, ``simplecnn``: for run names and tags."""
    name = str(model_cfg._target_).rsplit(".", 1)[-1].lower()
    depth = model_cfg.get("depth")
    return f"{name}{depth}" if depth is not None else name


def build_model(model_cfg: DictConfig, data: DataBundle) -> nn.Module:
    """The dataset decides the input channels, classes and image size; the config the rest."""
    model: nn.Module = build(
        model_cfg,
        in_channels=data.in_channels,
        num_classes=data.num_classes,
        image_size=data.image_size,
    )
    return model


def build_trainer(
    cfg: DictConfig,
    data: DataBundle,
    device: torch.device,
    output_dir: Path,
    run: TrackedRun,
    callbacks: Sequence[EpochCallback],
    dist: DistributedContext,
) -> Trainer:
    model = accelerate_model(build_model(cfg.model, data).to(device), cfg.trainer, device)
    optimizer = build_optimizer(cfg.optimizer, model.parameters(), cfg.trainer, device)
    batches = num_train_batches(
        dist.train_shard_size(len(data.train)),
        cfg.trainer.batch_size,
        cfg.trainer.limit_train_batches,
    )
    scheduler = build(cfg.scheduler)(
        optimizer,
        epochs=cfg.trainer.max_epochs,
        steps_per_epoch=-(-batches // cfg.trainer.grad_accum_steps),
    )
    return Trainer(
        cfg.trainer,
        model,
        optimizer,
        scheduler,
        data,
        device,
        seed=cfg.seed,
        monitor=cfg.optimized_metric,
        checkpoint_dir=output_dir / "checkpoints",
        log_metrics=run.log_metrics,
        callbacks=callbacks,
        dist=dist,
    )


def run_tags(cfg: DictConfig, output_dir: Path) -> dict[str, Any]:
    return {
        "dataset": cfg.dataset.name,
        "model": model_name(cfg.model),
        "optimizer": str(cfg.optimizer._target_).rsplit(".", 1)[-1].lower(),
        "git_commit": git_commit(),
        "output_dir": str(output_dir.resolve()),
        **cfg.mlflow.tags,
        **trial_tags(cfg.get("tuning")),
    }


def run_training(
    cfg: DictConfig, output_dir: Path, callbacks: Sequence[EpochCallback] = ()
) -> float:
    """Train, evaluate on the test split, log everything; return the best ``optimized_metric``.

    Everything that can fail on bad input (config ranges, a bad checkpoint to resume, an unreachable
    tracking server, missing data, device) happens before the MLflow run opens, so a bad command
    leaves no run behind.
    """
    validate_config(cfg)
    resume = load_resume_point(cfg.resume) if cfg.get("resume") else None
    check_tracking_server(cfg.mlflow.tracking_uri)
    if resume is not None:
        check_resumable_run(cfg, resume)
    with session(cfg.distributed, cfg.trainer.device, cfg.trainer.skip_nonfinite_loss) as dist:
        return train_in_session(cfg, output_dir, callbacks, dist, resume)


def open_run(
    cfg: DictConfig, output_dir: Path, dist: DistributedContext, run_id: str | None = None
) -> AbstractContextManager[TrackedRun]:
    """Rank 0 holds the job's one MLflow run (reopened by ``run_id`` on a resume); the other ranks
    log into nothing."""
    if not dist.is_main:
        return nullcontext(NullRun())
    return mlflow_run(
        cfg.mlflow.tracking_uri,
        cfg.mlflow.experiment_name,
        cfg.mlflow.run_name or f"{cfg.dataset.name}-{model_name(cfg.model)}",
        run_tags(cfg, output_dir),
        flush_interval_s=cfg.mlflow.flush_interval_s,
        run_id=run_id,
    )


def train_in_session(
    cfg: DictConfig,
    output_dir: Path,
    callbacks: Sequence[EpochCallback],
    dist: DistributedContext,
    resume: ResumePoint | None = None,
) -> float:
    """``run_training`` once this process knows its place in the job (alone or one rank)."""
    check_same_job(dist, cfg, output_dir)
    scaled = scale_for_world(cfg, dist.world_size)
    threads = configure_threads(cfg.trainer.num_threads, dist.local_world_size)
    seed_everything(dist.rank_seed(cfg.seed), cfg.trainer.deterministic)
    device = dist.device
    data = accelerate_data(build_data(cfg.dataset, cfg.seed), cfg.trainer, device)
    log.info(
        "%s: %d train / %d val / %d test images of %dx%dx%d, %d classes; device %s, %d threads",
        cfg.dataset.name,
        len(data.train),
        len(data.val),
        len(data.test),
        data.in_channels,
        data.image_size,
        data.image_size,
        data.num_classes,
        device,
        threads,
    )
    hydra_dir = output_dir / ".hydra"
    if dist.is_main:
        save_resolved(cfg, hydra_dir)
    with (
        interrupt_handling(),
        open_run(cfg, output_dir, dist, resume.run_id if resume is not None else None) as run,
    ):
        log.info("MLflow run %s", run.run_id)
        log_config(cfg, run, resume)
        run.log_params(world_params(cfg, scaled, dist.world_size), reopened=resume is not None)
        if hydra_dir.is_dir():
            # A resume keeps the original configs where a replay looks for them.
            folder = "hydra" if resume is None else f"hydra/resumed_at_epoch_{resume.epoch + 1}"
            run.log_redacted_folder(hydra_dir, folder)
        try:
            trainer = build_trainer(scaled, data, device, output_dir, run, callbacks, dist)
            trainer.extra_state[RUN_ID_KEY] = run.run_id
            # Resolved and redacted: a checkpoint is rebuilt (evaluate, replay) without conf/.
            trainer.extra_state["config"] = redact_text(OmegaConf.to_yaml(cfg, resolve=True))
            if resume is not None:
                restore(trainer, resume)
                if cfg.trainer.save_checkpoints and dist.is_main:
                    copy_checkpoints(resume, output_dir / "checkpoints")
                log.info("Resuming %s after epoch %d", resume.path, resume.epoch)
            result = trainer.fit()
            check_interrupt()
            finish(cfg, trainer, result, data, output_dir, run)
        except RunInterrupted as stop:
            raise RunInterrupted(interrupted_message(stop, run, output_dir), stop.signum) from stop
    return result.best_value


def log_config(cfg: DictConfig, run: TrackedRun, resume: ResumePoint | None) -> None:
    """Log the config as params; a resumed run keeps the params it was started with."""
    params = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(params, dict)
    params.pop("resume", None)
    changed = run.log_params(params, reopened=resume is not None)  # type: ignore[arg-type]
    if resume is not None:
        run.set_tags({"resumed_from": str(resume.path.resolve())})
    if changed:
        log.warning(
            "Resumed with settings that differ from the run's logged params (kept as logged): %s",
            ", ".join(changed),
        )


def finish(
    cfg: DictConfig,
    trainer: Trainer,
    result: FitResult,
    data: DataBundle,
    output_dir: Path,
    run: TrackedRun,
) -> None:
    """Test the best epoch's weights, write and log the report, log the model and hand it to the
    registry policy (``registry=none`` does nothing)."""
    trainer.restore_best()
    test = trainer.evaluate(data.test)
    if not trainer.dist.is_main:
        return
    report = build_report(test, data.classes, "test")
    report_dir = output_dir / "report"
    write_report(report, report_dir)
    write_history(result.history, report_dir)
    run.log_metrics(
        {**report.metrics(), f"best_{cfg.optimized_metric}": result.best_value}, result.epochs_run
    )
    run.log_artifacts(report_dir, "report")
    log.info(
        "best %s %.4f at epoch %d of %d%s\n%s",
        cfg.optimized_metric,
        result.best_value,
        result.best_epoch,
        result.epochs_run,
        " (stopped early)" if result.stopped_early else "",
        report.format(),
    )
    if cfg.mlflow.log_model:
        example = data.augment.normalize(data.test.images[:4]).cpu().contiguous()
        model_uri = log_model(trainer.model, example, data.classes)
        apply_registry_policy(
            cfg.registry,
            mlflow.get_tracking_uri(),
            run.run_id,
            model_uri,
            report.metrics(),
            data.test,
        )
