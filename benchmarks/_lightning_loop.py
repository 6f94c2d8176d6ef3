"""What users would pick instead: a Lightning Trainer on the same module, data and schedule, with
its MLflow logger and its default per-epoch checkpoint, as a user would set it up.

Usage: python benchmarks/_lightning_loop.py EPOCHS TRACKING_URI
"""

from __future__ import annotations

import itertools
import sys
import time
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import MLFlowLogger
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from benchmarks import _digits_workload as work
from benchmarks._common import emit
from vision_exp.data.datamodule import Split


class Batches(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Indexed by a whole list of indices (with ``batch_size=None`` below), so batches come
    straight out of the in-memory tensors, as in the framework and the bare loop."""

    def __init__(self, split: Split) -> None:
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.split.images[index], self.split.labels[index]


class Module(L.LightningModule):
    def __init__(self, epochs: int, steps: int) -> None:
        super().__init__()
        self.net = work.model()
        self.epochs, self.steps = epochs, steps
        _, _, self.augment = work.data()
        self.generator = torch.Generator().manual_seed(work.SEED)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> torch.Tensor:
        images, labels = batch
        loss = F.cross_entropy(self.net(self.augment.train(images, self.generator)), labels)
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> None:
        images, labels = batch
        logits = self.net(self.augment.normalize(images))
        self.log("val_loss", F.cross_entropy(logits, labels))
        self.log("val_acc", (logits.argmax(1) == labels).float().mean())

    def configure_optimizers(self) -> Any:
        optimizer, schedule = work.optimizer_and_schedule(self.net, self.epochs, self.steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


class EpochClock(L.Callback):
    """Epoch ends as Lightning sees them: after the epoch's validation and checkpoint."""

    def __init__(self) -> None:
        self.ends = [time.perf_counter()]

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.ends.append(time.perf_counter())


def main(epochs: int, tracking_uri: str) -> None:
    work.threads()
    train, val, _ = work.data()
    steps = len(train) // work.BATCH_SIZE
    train_sampler = BatchSampler(RandomSampler(train), work.BATCH_SIZE, drop_last=True)
    val_sampler = BatchSampler(SequentialSampler(val), work.EVAL_BATCH_SIZE, drop_last=False)
    clock = EpochClock()
    trainer = L.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        logger=MLFlowLogger(experiment_name="lightning", tracking_uri=tracking_uri),
        callbacks=[clock],
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir="lightning_out",
    )
    clock.ends = [time.perf_counter()]
    trainer.fit(
        Module(epochs, steps),
        DataLoader(Batches(train), sampler=train_sampler, batch_size=None),
        DataLoader(Batches(val), sampler=val_sampler, batch_size=None),
    )
    ends = clock.ends
    emit({"epoch_s": [b - a for a, b in itertools.pairwise(ends)]})


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
