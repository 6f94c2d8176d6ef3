"""The overhead benchmark's workload, shared by the bare loop and the Lightning run: the digits
experiment's data, model, optimizer, schedule and batch size, as the framework builds them."""

from __future__ import annotations

import os

import torch
from torch import nn

from vision_exp.data.augment import BatchAugment
from vision_exp.data.datamodule import Split, split_train_val
from vision_exp.data.sources import digits
from vision_exp.models.simple_cnn import SimpleCNN

BATCH_SIZE = 64
EVAL_BATCH_SIZE = 512
LR, WEIGHT_DECAY, SEED = 3.0e-3, 1.0e-4, 42


def threads() -> None:
    """The parent's ``--threads`` (as ``trainer.num_threads`` does for the framework)."""
    torch.set_num_threads(int(os.environ["BENCH_THREADS"]))


def data() -> tuple[Split, Split, BatchAugment]:
    splits = digits(test_fraction=0.2)
    train, val = split_train_val(splits.train_images, splits.train_labels, 0.1, SEED)
    return train, val, BatchAugment([0.3050], [0.3760], crop_padding=1, hflip=False)


def model() -> nn.Module:
    torch.manual_seed(SEED)
    return SimpleCNN(in_channels=1, num_classes=10, image_size=8, width=32, dropout=0.1)


def optimizer_and_schedule(
    net: nn.Module, epochs: int, steps_per_epoch: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    optimizer = torch.optim.AdamW(net.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=LR, total_steps=epochs * steps_per_epoch, pct_start=0.25
    )
    return optimizer, schedule
