"""Mini-batches of index permutations over in-memory tensors."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from vision_exp.data.datamodule import Split


def epoch_order(
    num_samples: int, seed: int, epoch: int, rank: int = 0, world_size: int = 1
) -> Tensor:
    """This rank's sample order for one epoch.

    A fresh permutation per (seed, epoch), as DistributedSampler draws it, so a resumed run sees the
    same order as an uninterrupted one; ranks take disjoint strided shards of it.
    """
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(num_samples, generator=generator)
    return order[rank::world_size]


def train_batches(
    split: Split, order: Tensor, batch_size: int, limit: int | None = None
) -> Iterator[tuple[Tensor, Tensor]]:
    """Full batches only (a trailing partial batch would add a noisy, smaller step)."""
    num_batches = num_train_batches(len(order), batch_size, limit)
    for start in range(0, num_batches * batch_size, batch_size):
        index = order[start : start + batch_size].to(split.images.device)
        yield split.images[index], split.labels[index]


def eval_batches(
    split: Split, batch_size: int, limit: int | None = None
) -> Iterator[tuple[Tensor, Tensor]]:
    for number, start in enumerate(range(0, len(split), batch_size)):
        if limit is not None and number >= limit:
            return
        yield split.images[start : start + batch_size], split.labels[start : start + batch_size]


def num_train_batches(num_samples: int, batch_size: int, limit: int | None) -> int:
    count = max(1, num_samples // batch_size)
    return count if limit is None else min(count, limit)
