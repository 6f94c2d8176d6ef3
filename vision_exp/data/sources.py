"""Dataset sources: each returns the whole dataset as uint8 tensors in memory.

Every dataset this project targets fits in memory, so a source is read once and all later work
(splitting, shuffling, augmentation) happens on tensors in batches, never per image through PIL.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from vision_exp.errors import DataError
from vision_exp.files import atomic_write


@dataclass(frozen=True)
class ImageSplits:
    """A dataset's official train and test splits: images NCHW uint8, labels int64."""

    train_images: Tensor
    train_labels: Tensor
    test_images: Tensor
    test_labels: Tensor
    classes: list[str]

    @property
    def in_channels(self) -> int:
        return int(self.train_images.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.train_images.shape[-1])

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def _missing_files_error(name: str, root: str, download: bool, cause: Exception) -> DataError:
    where = f"dataset.root={Path(root).resolve()}"
    if download:
        problem = f"dataset={name}: downloading into {where} failed ({cause}); this needs internet."
    else:
        problem = (
            f"dataset={name}: no usable files under {where} with dataset.download=false ({cause})."
        )
    return DataError(
        f"{problem} Put the official files there or point dataset.root at an existing copy "
        "(dataset.verify_checksums=false loads files in the official format without the MD5 "
        "check), "
        "or set dataset.download=true on a machine with internet. "
        "For an offline run use experiment=digits."
    )


def _hwc_to_chw(images: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).contiguous()


def _without_checksums(base: type[Any]) -> type[Any]:
    """The same torchvision class with every MD5 set to None, which its ``check_integrity`` reads
    as "the file exists": local copies and fixtures in the official format load as real."""
    return type(
        f"{base.__name__}WithoutChecksums",
        (base,),
        {
            "train_list": [[name, None] for name, _ in base.train_list],
            "test_list": [[name, None] for name, _ in base.test_list],
            "meta": {**base.meta, "md5": None},
        },
    )


def _cifar(name: str, root: str, download: bool, verify_checksums: bool) -> ImageSplits:
    from torchvision import datasets

    base = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100

    loader = base if verify_checksums else _without_checksums(base)
    try:
        train = loader(root, train=True, download=download)
        test = loader(root, train=False, download=download)
    except (RuntimeError, OSError) as error:
        raise _missing_files_error(name, root, download, error) from error
    return ImageSplits(
        train_images=_hwc_to_chw(train.data),
        train_labels=torch.as_tensor(train.targets, dtype=torch.int64),
        test_images=_hwc_to_chw(test.data),
        test_labels=torch.as_tensor(test.targets, dtype=torch.int64),
        classes=list(train.classes),
    )


def cifar10(root: str, download: bool = False, verify_checksums: bool = True) -> ImageSplits:
    return _cifar("cifar10", root, download, verify_checksums)


def cifar100(root: str, download: bool = False, verify_checksums: bool = True) -> ImageSplits:
    return _cifar("cifar100", root, download, verify_checksums)


def fashion_mnist(root: str, download: bool = False) -> ImageSplits:
    from torchvision import datasets

    try:
        train = datasets.FashionMNIST(root, train=True, download=download)
        test = datasets.FashionMNIST(root, train=False, download=download)
    except (RuntimeError, OSError) as error:
        raise _missing_files_error("fashion_mnist", root, download, error) from error
    return ImageSplits(
        train_images=train.data.unsqueeze(1).contiguous(),
        train_labels=train.targets.to(torch.int64),
        test_images=test.data.unsqueeze(1).contiguous(),
        test_labels=test.targets.to(torch.int64),
        classes=list(train.classes),
    )


def digits(test_fraction: float = 0.2, cache_dir: str | None = None) -> ImageSplits:
    """Importing scikit-learn (and SciPy with it) takes longer than everything else before the
    first training step, so its split is cached as ``.npz`` under ``cache_dir`` and later runs
    read that file instead. The key holds scikit-learn's version and the test fraction."""
    cache = None
    if cache_dir is not None:
        version = importlib.metadata.version("scikit-learn")
        cache = Path(cache_dir) / "digits" / f"splits-sklearn{version}-test{test_fraction}.npz"
        if cache.is_file():
            try:
                return _read_splits(cache)
            except (OSError, ValueError, KeyError):
                pass  # an unreadable cache is rebuilt below
    splits = _digits_from_sklearn(test_fraction)
    if cache is not None:
        _write_splits(splits, cache)
    return splits


def _digits_from_sklearn(test_fraction: float) -> ImageSplits:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    # Pixel values are 0..16; scale to the 0..255 range every other source uses.
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None, :, :]
    labels = bunch.target.astype(np.int64)
    train_x, test_x, train_y, test_y = train_test_split(
        images, labels, test_size=test_fraction, stratify=labels, random_state=0
    )
    return ImageSplits(
        train_images=torch.from_numpy(train_x),
        train_labels=torch.from_numpy(train_y),
        test_images=torch.from_numpy(test_x),
        test_labels=torch.from_numpy(test_y),
        classes=[str(digit) for digit in bunch.target_names],
    )


def _write_splits(splits: ImageSplits, path: Path) -> None:
    """Atomically, so a reader (another DDP rank, a parallel trial) never sees half a file."""
    with atomic_write(path) as handle:
        np.savez(
            handle,
            train_images=splits.train_images.numpy(),
            train_labels=splits.train_labels.numpy(),
            test_images=splits.test_images.numpy(),
            test_labels=splits.test_labels.numpy(),
            classes=np.array(splits.classes),
        )


def _read_splits(path: Path) -> ImageSplits:
    with np.load(path) as arrays:
        return ImageSplits(
            train_images=torch.from_numpy(arrays["train_images"]),
            train_labels=torch.from_numpy(arrays["train_labels"]),
            test_images=torch.from_numpy(arrays["test_images"]),
            test_labels=torch.from_numpy(arrays["test_labels"]),
            classes=[str(name) for name in arrays["classes"]],
        )


def synthetic(
    num_train: int = 2048,
    num_test: int = 512,
    num_classes: int = 10,
    channels: int = 3,
    image_size: int = 32,
    seed: int = 0,
) -> ImageSplits:
    """Noise around one fixed random template per class: learnable, so smoke tests see progress."""
    generator = torch.Generator().manual_seed(seed)
    shape = (channels, image_size, image_size)
    templates = torch.rand((num_classes, *shape), generator=generator) * 255.0

    def draw(count: int) -> tuple[Tensor, Tensor]:
        labels = torch.randint(num_classes, (count,), generator=generator)
        noise = torch.randn((count, *shape), generator=generator) * 64.0
        images = (templates[labels] + noise).clamp(0, 255).to(torch.uint8)
        return images, labels

    train_images, train_labels = draw(num_train)
    test_images, test_labels = draw(num_test)
    return ImageSplits(
        train_images,
        train_labels,
        test_images,
        test_labels,
        [f"class_{i}" for i in range(num_classes)],
    )
