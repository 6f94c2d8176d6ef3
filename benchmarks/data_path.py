"""Benchmark 2, the data path: training images per second (random crop with 4-pixel padding,
horizontal flip, normalisation, batches of 256) on CIFAR-shaped uint8 data, for

- ours: ``train_batches`` + ``BatchAugment.train`` on whole in-memory batches,
- torchvision: ``DataLoader`` over a dataset of PIL images with ``RandomCrop``,
  ``RandomHorizontalFlip``, ``ToTensor`` and ``Normalize`` (CIFAR10's own per-image path), with 0
  and 2 worker processes.

Rounds interleave the contenders; medians are reported.

Usage: python -m benchmarks.data_path [--images 10000] [--rounds 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterable

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from benchmarks._common import machine, median
from vision_exp.data.augment import BatchAugment
from vision_exp.data.batches import epoch_order, train_batches
from vision_exp.data.datamodule import Split

MEAN, STD, BATCH = [0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616], 256


class PILImages(Dataset[tuple[torch.Tensor, int]]):
    """What torchvision.datasets.CIFAR10 does per item: HWC uint8 -> PIL image -> transform."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: Callable) -> None:  # type: ignore[type-arg]
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(Image.fromarray(self.images[index])), int(self.labels[index])


def images_per_second(batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> float:
    started, count = time.perf_counter(), 0
    for images, _ in batches:
        count += images.shape[0]
    return count / (time.perf_counter() - started)


def ours(split: Split, epoch: int) -> float:
    augment = BatchAugment(MEAN, STD, crop_padding=4, hflip=True)
    generator = torch.Generator().manual_seed(epoch)
    order = epoch_order(len(split), seed=0, epoch=epoch)
    return images_per_second(
        (augment.train(images, generator), labels)
        for images, labels in train_batches(split, order, BATCH)
    )


def torchvision_loader(split: Split, workers: int) -> float:
    transform = transforms.Compose(
        [
            transforms.RandomCrop(32, padding=4),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(MEAN, STD),
        ]
    )
    hwc = split.images.permute(0, 2, 3, 1).contiguous().numpy()
    dataset = PILImages(hwc, split.labels.numpy(), transform)
    loader = DataLoader(
        dataset, batch_size=BATCH, shuffle=True, num_workers=workers, drop_last=True
    )
    return images_per_second(loader)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    split = Split(
        torch.randint(0, 256, (args.images, 3, 32, 32), dtype=torch.uint8, generator=generator),
        torch.randint(0, 10, (args.images,), generator=generator),
    )
    contenders: dict[str, Callable[[int], float]] = {
        "ours (batched, in memory)": lambda r: ours(split, r),
        "torchvision, 0 workers": lambda r: torchvision_loader(split, 0),
        "torchvision, 2 workers": lambda r: torchvision_loader(split, 2),
    }
    results: dict[str, list[float]] = {name: [] for name in contenders}
    for round_number in range(args.rounds):
        for name, measure in contenders.items():
            results[name].append(measure(round_number))
            print(f"round {round_number}: {name:28s} {results[name][-1]:10,.0f} img/s")
    ours_rate = median(results["ours (batched, in memory)"])
    print(f"\nmachine: {machine()}")
    print(
        f"{args.images} CIFAR-shaped images, batch {BATCH}, {args.threads} thread(s), "
        f"median of {args.rounds}:"
    )
    for name, values in results.items():
        rate = median(values)
        print(f"  {name:28s} {rate:10,.0f} img/s   ours is x{ours_rate / rate:.1f}")
    print("target: ours >= 8x torchvision")


if __name__ == "__main__":
    main()
