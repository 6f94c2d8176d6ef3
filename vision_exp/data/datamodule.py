"""From a dataset config to the train/validation/test tensors a run uses."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from omegaconf import DictConfig
from torch import Tensor

from vision_exp.config.targets import build
from vision_exp.data.augment import BatchAugment
from vision_exp.data.sources import ImageSplits


@dataclass(frozen=True)
class Split:
    images: Tensor
    labels: Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def to(self, device: torch.device) -> Split:
        return Split(self.images.to(device), self.labels.to(device))


@dataclass(frozen=True)
class DataBundle:
    train: Split
    val: Split
    test: Split
    classes: list[str]
    in_channels: int
    image_size: int
    augment: BatchAugment

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def split_train_val(
    images: Tensor, labels: Tensor, val_fraction: float, seed: int
) -> tuple[Split, Split]:
    """A seeded random split, so a replay with the same seed validates on the same images."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(labels), generator=generator)
    num_val = max(1, round(len(labels) * val_fraction))
    val_idx, train_idx = order[:num_val], order[num_val:]
    return Split(images[train_idx], labels[train_idx]), Split(images[val_idx], labels[val_idx])


def build_data(dataset_cfg: DictConfig, seed: int) -> DataBundle:
    splits: ImageSplits = build(dataset_cfg.source)
    images, labels = splits.train_images, splits.train_labels
    if dataset_cfg.subset is not None and dataset_cfg.subset < len(labels):
        keep = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
        keep = keep[: dataset_cfg.subset]
        images, labels = images[keep], labels[keep]
    train, val = split_train_val(images, labels, dataset_cfg.val_fraction, seed)
    test = Split(splits.test_images, splits.test_labels)
    if dataset_cfg.subset is not None and dataset_cfg.subset < len(test):
        test = Split(test.images[: dataset_cfg.subset], test.labels[: dataset_cfg.subset])
    augment = BatchAugment(
        mean=list(dataset_cfg.mean),
        std=list(dataset_cfg.std),
        crop_padding=dataset_cfg.augment.crop_padding,
        hflip=dataset_cfg.augment.hflip,
    )
    return DataBundle(
        train=train,
        val=val,
        test=test,
        classes=splits.classes,
        in_channels=splits.in_channels,
        image_size=splits.image_size,
        augment=augment,
    )
