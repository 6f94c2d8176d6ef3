"""Tiny datasets in the official on-disk formats, read back through torchvision's own loaders."""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np


def _images(count: int, channels: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 10
    # A per-class brightness so a model can learn something from a handful of images.
    images = (
        rng.integers(0, 60, size=(count, channels, size, size)) + labels[:, None, None, None] * 19
    )
    return images.astype(np.uint8), labels


def write_cifar10(root: Path, per_batch: int = 20, test: int = 40) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for number in range(1, 6):
        images, labels = _images(per_batch, 3, 32, seed=number)
        batch = {"data": images.reshape(per_batch, -1), "labels": labels.tolist()}
        (folder / f"data_batch_{number}").write_bytes(pickle.dumps(batch))
    images, labels = _images(test, 3, 32, seed=0)
    (folder / "test_batch").write_bytes(
        pickle.dumps({"data": images.reshape(test, -1), "labels": labels.tolist()})
    )
    names = [
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ]
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": names}))
    return root


def write_cifar100(root: Path, train: int = 100, test: int = 40) -> Path:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    for name, count, seed in (("train", train, 1), ("test", test, 0)):
        images, labels = _images(count, 3, 32, seed)
        entry = {"data": images.reshape(count, -1), "fine_labels": labels.tolist()}
        (folder / name).write_bytes(pickle.dumps(entry))
    (folder / "meta").write_bytes(pickle.dumps({"fine_label_names": [f"c{i}" for i in range(100)]}))
    return root


def _idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(
        f">{array.ndim}i", *array.shape
    )
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_fashion_mnist(root: Path, train: int = 100, test: int = 40) -> Path:
    folder = root / "FashionMNIST" / "raw"
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, count, seed in (("train", train, 1), ("t10k", test, 0)):
        images, labels = _images(count, 1, 28, seed)
        _idx(folder / f"{prefix}-images-idx3-ubyte", images[:, 0])
        _idx(folder / f"{prefix}-labels-idx1-ubyte", labels)
    return root
