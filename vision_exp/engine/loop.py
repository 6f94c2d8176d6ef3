"""One pass over the data: a training epoch or an evaluation."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm  # type: ignore[import-untyped]

from vision_exp.engine.interrupt import check_interrupt
from vision_exp.engine.runtime import autocast
from vision_exp.errors import TrainingError


@dataclass
class StepContext:
    """What a training epoch needs besides the model and the batches."""

    optimizer: torch.optim.Optimizer
    step_scheduler: Callable[[], None]
    loss_fn: nn.Module
    device: torch.device
    precision: str
    grad_accum_steps: int
    grad_clip_norm: float | None
    scaler: torch.amp.GradScaler | None
    skip_nonfinite: bool = False
    progress_bar: bool = True
    cpu_autocast: bool = False
    # "Does any rank want to stop?": identity in one process, a collective under DDP.
    agree: Callable[[bool], bool] = bool


@dataclass
class TrainStats:
    loss: float
    accuracy: float
    images: int
    seconds: float
    skipped_batches: int = 0

    @property
    def images_per_sec(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0


@dataclass
class EvalResult:
    """Sums rather than means, so results from several shards combine exactly."""

    loss_sum: float
    correct: int
    count: int
    predictions: Tensor
    targets: Tensor

    @property
    def loss(self) -> float:
        return self.loss_sum / max(1, self.count)

    @property
    def accuracy(self) -> float:
        return self.correct / max(1, self.count)


def _progress(batches: Iterable[tuple[Tensor, Tensor]], total: int, desc: str, show: bool) -> tqdm:
    return tqdm(
        batches,
        total=total,
        desc=desc,
        leave=False,
        dynamic_ncols=True,
        disable=not (show and sys.stderr.isatty()),
    )


def train_one_epoch(
    model: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
    num_batches: int,
    transform: Callable[[Tensor], Tensor],
    ctx: StepContext,
    epoch: int,
) -> TrainStats:
    model.train()
    loss_sum = torch.zeros((), device=ctx.device)
    correct = torch.zeros((), device=ctx.device, dtype=torch.int64)
    seen = skipped = 0
    started = time.perf_counter()
    ctx.optimizer.zero_grad(set_to_none=True)
    bar = _progress(batches, num_batches, f"epoch {epoch}", ctx.progress_bar)
    for index, (images, labels) in enumerate(bar):
        check_interrupt(ctx.agree)
        images = transform(images.to(ctx.device, non_blocking=True))
        labels = labels.to(ctx.device, non_blocking=True)
        with autocast(ctx.device, ctx.precision, ctx.cpu_autocast):
            logits = model(images)
            loss = ctx.loss_fn(logits, labels)
        if not torch.isfinite(loss):
            if ctx.skip_nonfinite:
                skipped += 1
                ctx.optimizer.zero_grad(set_to_none=True)
                continue
            lr = ctx.optimizer.param_groups[0]["lr"]
            raise TrainingError(
                f"Loss became {loss.item()} at epoch {epoch}, step {index} (lr={lr:.3g}). "
                "Lower optimizer.lr, set trainer.grad_clip_norm, or set "
                "trainer.skip_nonfinite_loss=true to skip such batches."
            )
        scaled = loss / ctx.grad_accum_steps
        if ctx.scaler is not None:
            ctx.scaler.scale(scaled).backward()
        else:
            scaled.backward()
        if (index + 1) % ctx.grad_accum_steps == 0 or index + 1 == num_batches:
            _optimizer_step(model, ctx)
        batch = labels.shape[0]
        loss_sum += loss.detach().float() * batch
        correct += (logits.argmax(1) == labels).sum()
        seen += batch
        if bar.disable is False and index % 10 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}", acc=f"{correct.item() / seen:.3f}")
    seconds = time.perf_counter() - started
    return TrainStats(
        loss=loss_sum.item() / max(1, seen),
        accuracy=correct.item() / max(1, seen),
        images=seen,
        seconds=seconds,
        skipped_batches=skipped,
    )


def _optimizer_step(model: nn.Module, ctx: StepContext) -> None:
    if ctx.scaler is not None:
        ctx.scaler.unscale_(ctx.optimizer)
    if ctx.grad_clip_norm is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), ctx.grad_clip_norm)
    if ctx.scaler is not None:
        ctx.scaler.step(ctx.optimizer)
        ctx.scaler.update()
    else:
        ctx.optimizer.step()
    ctx.optimizer.zero_grad(set_to_none=True)
    ctx.step_scheduler()


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
    transform: Callable[[Tensor], Tensor],
    device: torch.device,
    precision: str = "32",
    tta_hflip: bool = False,
    cpu_autocast: bool = False,
) -> EvalResult:
    """``tta_hflip`` averages the logits of each image and its mirror image (test-time
    augmentation): for models trained with flips, a cheap gain of a few tenths of a point."""
    model.eval()
    loss_fn = nn.CrossEntropyLoss(reduction="sum")
    loss_sum = 0.0
    predictions, targets = [], []
    for images, labels in batches:
        inputs = transform(images.to(device, non_blocking=True))
        labels = labels.to(device, non_blocking=True)
        with autocast(device, precision, cpu_autocast):
            logits = model(inputs)
            if tta_hflip:
                logits = (logits + model(inputs.flip(-1))) / 2
        loss_sum += float(loss_fn(logits.float(), labels))
        predictions.append(logits.argmax(1).cpu())
        targets.append(labels.cpu())
    preds = torch.cat(predictions) if predictions else torch.empty(0, dtype=torch.int64)
    truth = torch.cat(targets) if targets else torch.empty(0, dtype=torch.int64)
    if not math.isfinite(loss_sum):
        loss_sum = math.inf
    return EvalResult(
        loss_sum=loss_sum,
        correct=int((preds == truth).sum()),
        count=int(truth.numel()),
        predictions=preds,
        targets=truth,
    )
