import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import compose_config
from tests.datasets_on_disk import write_cifar10, write_cifar100, write_fashion_mnist
from vision_exp.data import sources
from vision_exp.data.augment import BatchAugment
from vision_exp.data.batches import epoch_order, eval_batches, num_train_batches, train_batches
from vision_exp.data.datamodule import Split, build_data, split_train_val
from vision_exp.errors import DataError


def test_digits_are_real_images_with_a_fixed_stratified_test_split() -> None:
    splits = sources.digits()
    assert splits.train_images.dtype == torch.uint8
    assert splits.train_images.shape[1:] == (1, 8, 8)
    assert len(splits.train_labels) + len(splits.test_labels) == 1797
    assert splits.num_classes == 10 and splits.in_channels == 1 and splits.image_size == 8
    assert int(splits.train_images.max()) == 255
    again = sources.digits()
    assert torch.equal(splits.test_labels, again.test_labels)
    assert torch.bincount(splits.test_labels).min() >= 35


def test_digits_split_is_cached_and_later_loads_skip_scikit_learn(tmp_path: Path) -> None:
    first = sources.digits(cache_dir=str(tmp_path))
    (cache,) = (tmp_path / "digits").glob("splits-sklearn*-test0.2.npz")
    assert not list((tmp_path / "digits").glob("*.tmp"))
    probe = (
        "import sys; from vision_exp.data import sources; "
        f"s = sources.digits(cache_dir={str(tmp_path)!r}); "
        "print(len(s.train_labels), s.classes[-1], 'sklearn' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == [str(len(first.train_labels)), "9", "False"]
    cached = sources.digits(cache_dir=str(tmp_path))
    assert torch.equal(cached.train_images, first.train_images)
    assert torch.equal(cached.test_labels, first.test_labels)
    assert cached.classes == first.classes

    cache.write_bytes(b"not an npz file")
    rebuilt = sources.digits(cache_dir=str(tmp_path))
    assert torch.equal(rebuilt.test_images, first.test_images)
    assert sources.digits(cache_dir=str(tmp_path)).classes == first.classes


def test_synthetic_is_deterministic_and_shaped_as_asked() -> None:
    first = sources.synthetic(num_train=64, num_test=16, num_classes=4, channels=3, image_size=16)
    second = sources.synthetic(num_train=64, num_test=16, num_classes=4, channels=3, image_size=16)
    assert first.train_images.shape == (64, 3, 16, 16)
    assert torch.equal(first.train_images, second.train_images)
    assert first.classes == ["class_0", "class_1", "class_2", "class_3"]


def test_cifar10_files_load_through_torchvision(tmp_path: Path) -> None:
    write_cifar10(tmp_path, per_batch=4, test=6)
    splits = sources.cifar10(str(tmp_path), verify_checksums=False)
    assert splits.train_images.shape == (20, 3, 32, 32)
    assert splits.test_images.shape == (6, 3, 32, 32)
    assert splits.classes[0] == "airplane"
    assert splits.train_labels.tolist()[:4] == [0, 1, 2, 3]


def test_checksums_are_verified_unless_switched_off(tmp_path: Path) -> None:
    write_cifar10(tmp_path, per_batch=2, test=2)
    with pytest.raises(DataError, match=r"dataset\.verify_checksums=false"):
        sources.cifar10(str(tmp_path))


def test_cifar100_files_load_through_torchvision(tmp_path: Path) -> None:
    write_cifar100(tmp_path, train=30, test=10)
    splits = sources.cifar100(str(tmp_path), verify_checksums=False)
    assert splits.num_classes == 100
    assert splits.train_images.shape == (30, 3, 32, 32)


def test_fashion_mnist_idx_files_load_through_torchvision(tmp_path: Path) -> None:
    write_fashion_mnist(tmp_path, train=30, test=10)
    splits = sources.fashion_mnist(str(tmp_path))
    assert splits.train_images.shape == (30, 1, 28, 28)
    assert splits.classes[1] == "Trouser"


@pytest.mark.parametrize("loader", [sources.cifar10, sources.cifar100, sources.fashion_mnist])
def test_missing_files_name_the_path_the_dataset_and_the_flag(
    loader: object, tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError) as caught:
        loader(str(missing))  # type: ignore[operator]
    message = str(caught.value)
    assert str(missing) in message
    assert "dataset.download=false" in message
    assert "experiment=digits" in message


def test_validation_split_is_seeded_disjoint_and_complete() -> None:
    images = torch.arange(100, dtype=torch.uint8).view(100, 1, 1, 1)
    labels = torch.arange(100)
    train, val = split_train_val(images, labels, 0.2, seed=3)
    assert len(val) == 20 and len(train) == 80
    assert sorted(train.labels.tolist() + val.labels.tolist()) == list(range(100))
    again, _ = split_train_val(images, labels, 0.2, seed=3)
    other, _ = split_train_val(images, labels, 0.2, seed=4)
    assert torch.equal(train.labels, again.labels)
    assert not torch.equal(train.labels, other.labels)


def test_subset_shrinks_train_and_test() -> None:
    cfg = compose_config("experiment=digits", "dataset.subset=100")
    data = build_data(cfg.dataset, seed=0)
    assert len(data.train) + len(data.val) == 100
    assert len(data.test) == 100
    assert data.num_classes == 10 and data.image_size == 8


def test_random_crop_shifts_each_image_on_its_own() -> None:
    augment = BatchAugment(mean=[0.0], std=[1.0], crop_padding=2, hflip=False)
    images = torch.full((64, 1, 6, 6), 255, dtype=torch.uint8)
    out = augment.train(images, torch.Generator().manual_seed(0))
    assert out.shape == (64, 1, 6, 6)
    zero_pixels = (out == 0).flatten(1).sum(1)
    assert zero_pixels.max() > 0  # padding shows at the borders of shifted images
    assert len(set(zero_pixels.tolist())) > 1  # and the shift differs between images


def test_flip_is_per_image_and_reproducible() -> None:
    augment = BatchAugment(mean=[0.0], std=[1.0], crop_padding=0, hflip=True)
    row = torch.arange(4, dtype=torch.uint8).view(1, 1, 1, 4).repeat(32, 1, 1, 1)
    first = augment.train(row, torch.Generator().manual_seed(1))
    second = augment.train(row, torch.Generator().manual_seed(1))
    assert torch.equal(first, second)
    flipped = first[:, 0, 0, 0] > first[:, 0, 0, -1]
    assert 0 < int(flipped.sum()) < 32


def test_normalize_uses_dataset_statistics() -> None:
    augment = BatchAugment(mean=[0.5], std=[0.25], crop_padding=0, hflip=False)
    out = augment.normalize(torch.tensor([0, 255], dtype=torch.uint8).view(2, 1, 1, 1))
    assert out.flatten().tolist() == pytest.approx([-2.0, 2.0])


def test_epoch_order_is_a_fresh_seeded_permutation_per_epoch() -> None:
    assert torch.equal(epoch_order(50, 1, 0), epoch_order(50, 1, 0))
    assert not torch.equal(epoch_order(50, 1, 0), epoch_order(50, 1, 1))
    assert sorted(epoch_order(50, 1, 2).tolist()) == list(range(50))


def test_rank_shards_are_disjoint_and_cover_the_epoch() -> None:
    shards = [epoch_order(51, 7, 3, rank=r, world_size=3) for r in range(3)]
    merged = torch.cat(shards).tolist()
    assert sorted(merged) == list(range(51))


def test_train_batches_are_full_and_limited() -> None:
    split = Split(torch.zeros(10, 1, 2, 2, dtype=torch.uint8), torch.arange(10))
    batches = list(train_batches(split, torch.arange(10), batch_size=4))
    assert [len(labels) for _, labels in batches] == [4, 4]
    assert len(list(train_batches(split, torch.arange(10), 4, limit=1))) == 1
    assert num_train_batches(3, 4, None) == 1


def test_eval_batches_cover_every_sample_once() -> None:
    split = Split(torch.zeros(10, 1, 2, 2, dtype=torch.uint8), torch.arange(10))
    labels = torch.cat([b for _, b in eval_batches(split, 4)])
    assert labels.tolist() == list(range(10))
    assert len(list(eval_batches(split, 4, limit=2))) == 2
