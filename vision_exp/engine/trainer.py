"""The epoch loop: train, validate, schedule, checkpoint, stop early, report."""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from omegaconf import DictConfig
from torch import nn
from torch.optim.lr_scheduler import ReduceLROnPlateau

from vision_exp.data.batches import eval_batches, num_train_batches, train_batches
from vision_exp.data.datamodule import DataBundle, Split
from vision_exp.distributed import DistributedContext, unwrap
from vision_exp.engine.checkpoint import BEST, LAST, CheckpointWriter
from vision_exp.engine.early_stopping import EarlyStopping, metric_mode
from vision_exp.engine.interrupt import check_interrupt
from vision_exp.engine.loop import EvalResult, StepContext, evaluate, train_one_epoch
from vision_exp.engine.rng import rng_state
from vision_exp.optim.schedulers import Scheduler

MetricsLogger = Callable[[dict[str, float], int], None]


class EpochCallback(Protocol):
    """Told each epoch's metrics; may raise to stop the run (a sweeper's pruning, say)."""

    def __call__(self, epoch: int, metrics: dict[str, float]) -> None: ...


@dataclass
class FitResult:
    best_value: float
    best_epoch: int
    epochs_run: int
    history: list[dict[str, float]] = field(default_factory=list)
    stopped_early: bool = False


class Trainer:
    def __init__(
        self,
        cfg: DictConfig,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: Scheduler,
        data: DataBundle,
        device: torch.device,
        seed: int,
        monitor: str,
        checkpoint_dir: Path | None,
        log_metrics: MetricsLogger,
        callbacks: Sequence[EpochCallback] = (),
        dist: DistributedContext | None = None,
    ) -> None:
        self.cfg = cfg
        self.dist = dist or DistributedContext(device)
        # Trained through DDP when distributed; evaluated, checkpointed and logged unwrapped.
        self.train_model = self.dist.wrap(model)
        self.model = unwrap(self.train_model)
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.data = data
        self.device = device
        self.seed = seed
        self.monitor = monitor
        self.checkpoint_dir = checkpoint_dir
        self.log_metrics = log_metrics
        self.callbacks = list(callbacks)
        self.stopper = EarlyStopping(
            metric_mode(monitor), cfg.early_stopping.patience, cfg.early_stopping.min_delta
        )
        self.scaler = (
            torch.amp.GradScaler("cuda")
            if cfg.precision == "16" and device.type == "cuda"
            else None
        )
        self.history: list[dict[str, float]] = []
        self.start_epoch = 0
        self.best_state: dict[str, torch.Tensor] | None = None
        self.extra_state: dict[str, Any] = {}
        self._checkpoints = CheckpointWriter()

    def _step_context(self) -> StepContext:
        scheduler = self.scheduler
        step_scheduler: Callable[[], None] = (
            (lambda: None) if isinstance(scheduler, ReduceLROnPlateau) else scheduler.step
        )
        return StepContext(
            optimizer=self.optimizer,
            step_scheduler=step_scheduler,
            loss_fn=nn.CrossEntropyLoss(label_smoothing=self.cfg.label_smoothing),
            device=self.device,
            precision=self.cfg.precision,
            grad_accum_steps=self.cfg.grad_accum_steps,
            grad_clip_norm=self.cfg.grad_clip_norm,
            scaler=self.scaler,
            skip_nonfinite=self.cfg.skip_nonfinite_loss,
            progress_bar=self.cfg.progress_bar,
            cpu_autocast=self.cfg.cpu_autocast,
            agree=self.dist.any,
        )

    def evaluate(self, split: Split, limit: int | None = None) -> EvalResult:
        """The first ``limit`` batches (all if None) of ``split``, shared out over the ranks."""
        if limit is not None:
            size = limit * self.cfg.eval_batch_size
            split = Split(split.images[:size], split.labels[:size])
        self.dist.sync_buffers(self.model)
        batches = eval_batches(self.dist.eval_shard(split), self.cfg.eval_batch_size)
        result = evaluate(
            self.model,
            batches,
            self.data.augment.normalize,
            self.device,
            self.cfg.precision,
            tta_hflip=self.cfg.tta_hflip,
            cpu_autocast=self.cfg.cpu_autocast,
        )
        return self.dist.reduce_eval(result, len(split))

    def fit(self) -> FitResult:
        ctx = self._step_context()
        num_batches = num_train_batches(
            self.dist.train_shard_size(len(self.data.train)),
            self.cfg.batch_size,
            self.cfg.limit_train_batches,
        )
        try:
            for epoch in range(self.start_epoch, self.cfg.max_epochs):
                if self.stopper.should_stop:  # a resumed run that had already stopped early
                    break
                self._fit_epoch(ctx, num_batches, epoch)
                if self.dist.any(self.stopper.should_stop):
                    break
        finally:
            self._checkpoints.close()
        return FitResult(
            best_value=self.stopper.best,
            best_epoch=self.stopper.best_epoch,
            epochs_run=len(self.history),
            history=self.history,
            stopped_early=self.stopper.should_stop,
        )

    def _fit_epoch(self, ctx: StepContext, num_batches: int, epoch: int) -> None:
        """Train and validate one epoch, then log, checkpoint and call back."""
        train = self.data.train
        generator = torch.Generator(device=self.device).manual_seed(
            self.dist.rank_seed(self.seed) + 7919 * epoch
        )
        order = self.dist.train_order(len(train), self.seed, epoch)
        stats = train_one_epoch(
            self.train_model,
            train_batches(train, order, self.cfg.batch_size, self.cfg.limit_train_batches),
            num_batches,
            functools.partial(self.data.augment.train, generator=generator),
            ctx,
            epoch,
        )
        stats = self.dist.reduce_train(stats)
        val = self.evaluate(self.data.val, self.cfg.limit_eval_batches)
        metrics = {
            "train_loss": stats.loss,
            "train_acc": stats.accuracy,
            "val_loss": val.loss,
            "val_acc": val.accuracy,
            "lr": self.optimizer.param_groups[0]["lr"],
            "epoch_time": stats.seconds,
            "images_per_sec": stats.images_per_sec,
        }
        if stats.skipped_batches:
            metrics["skipped_batches"] = float(stats.skipped_batches)
        value = metrics[self.monitor]
        if isinstance(self.scheduler, ReduceLROnPlateau):
            self.scheduler.step(value)
        self.history.append({"epoch": float(epoch), **metrics})
        self.log_metrics(metrics, epoch)
        improved = self.stopper.update(value, epoch)
        if improved:
            self.best_state = copy.deepcopy(self.model.state_dict())
        self._save(epoch, improved)
        for callback in self.callbacks:
            callback(epoch, metrics)
        check_interrupt(self.dist.any)

    def restore_best(self) -> None:
        """Put the best epoch's weights back into the model (the test set is evaluated on them)."""
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)

    def state_dict(self, epoch: int) -> dict[str, Any]:
        state: dict[str, Any] = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": epoch,
            "early_stopping": self.stopper.state_dict(),
            "history": self.history,
            **rng_state(),
            **self.extra_state,
        }
        if self.scaler is not None:
            state["scaler"] = self.scaler.state_dict()
        return state

    def _save(self, epoch: int, best: bool) -> None:
        if self.checkpoint_dir is not None and self.cfg.save_checkpoints and self.dist.is_main:
            names = [LAST, BEST] if best else [LAST]
            paths = [self.checkpoint_dir / name for name in names]
            self._checkpoints.submit(self.state_dict(epoch), paths)
