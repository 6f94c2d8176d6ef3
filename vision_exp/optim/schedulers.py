"""Learning-rate schedules, all built from (optimizer, epochs, steps_per_epoch).

Every schedule except ``plateau`` is stepped once per optimizer step, so warm-up and decay are
smooth whatever the number of batches; ``plateau`` watches a metric and is stepped once per epoch.
"""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, OneCycleLR, ReduceLROnPlateau

Scheduler = LRScheduler | ReduceLROnPlateau


def constant(optimizer: Optimizer, epochs: int, steps_per_epoch: int) -> LRScheduler:
    return LambdaLR(optimizer, lambda _: 1.0)


def cosine(
    optimizer: Optimizer,
    epochs: int,
    steps_per_epoch: int,
    warmup_epochs: float = 0.0,
    min_lr_ratio: float = 0.0,
) -> LRScheduler:
    total = max(1, epochs * steps_per_epoch)
    warmup = min(total - 1, round(warmup_epochs * steps_per_epoch))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, factor)


def onecycle(
    optimizer: Optimizer,
    epochs: int,
    steps_per_epoch: int,
    pct_start: float = 0.25,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
) -> LRScheduler:
    max_lr = [group["lr"] for group in optimizer.param_groups]
    # OneCycleLR divides by the warm-up's length in steps, pct_start * total_steps - 1: a run of a
    # handful of steps (debug presets, max_epochs=1) gets a schedule just long enough to be defined,
    # and stops part-way through it.
    return OneCycleLR(
        optimizer,
        max_lr=max_lr,
        total_steps=max(epochs * steps_per_epoch, math.ceil(2 / pct_start)),
        pct_start=pct_start,
        div_factor=div_factor,
        final_div_factor=final_div_factor,
    )


def step(
    optimizer: Optimizer,
    epochs: int,
    steps_per_epoch: int,
    step_epochs: int = 30,
    gamma: float = 0.1,
) -> LRScheduler:
    every = max(1, step_epochs * steps_per_epoch)
    return LambdaLR(optimizer, lambda s: gamma ** (s // every))


def plateau(
    optimizer: Optimizer,
    epochs: int,
    steps_per_epoch: int,
    factor: float = 0.1,
    patience: int = 5,
    mode: str = "max",
) -> ReduceLROnPlateau:
    return ReduceLROnPlateau(optimizer, mode=mode, factor=factor, patience=patience)  # type: ignore[arg-type]


def linear(
    optimizer: Optimizer,
    epochs: int,
    steps_per_epoch: int,
    pct_start: float = 0.25,
    start_ratio: float = 0.1,
    end_ratio: float = 0.0,
) -> LRScheduler:
    """Triangular one-cycle: linear from ``start_ratio * lr`` up to ``lr`` over the first
    ``pct_start`` of training, then linear down to ``end_ratio * lr`` (the short schedules of
    CIFAR speed runs, where a cosine tail wastes the few epochs there are)."""
    total = max(2, epochs * steps_per_epoch)
    peak = max(1, round(pct_start * total))

    def factor(step: int) -> float:
        if step < peak:
            return start_ratio + (1.0 - start_ratio) * step / peak
        progress = min(1.0, (step - peak) / max(1, total - peak))
        return 1.0 + (end_ratio - 1.0) * progress

    return LambdaLR(optimizer, factor)
