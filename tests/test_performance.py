"""Speed features and the CIFAR-10 speedrun recipe: their mechanics, not their timings (those are
measured side by side in benchmarks/)."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.conftest import compose_config, mlflow_runs, run_module
from tests.datasets_on_disk import write_cifar10
from vision_exp.data.augment import BatchAugment
from vision_exp.data.datamodule import build_data
from vision_exp.engine.acceleration import (
    accelerate_data,
    accelerate_model,
    build_optimizer,
    enabled,
)
from vision_exp.engine.checkpoint import load_checkpoint
from vision_exp.engine.loop import evaluate
from vision_exp.errors import ConfigError
from vision_exp.models.speednet import SpeedNet
from vision_exp.optim.schedulers import linear
from vision_exp.tracking.mlflow_run import mlflow_run

CPU = torch.device("cpu")
MEAN, STD = [0.4, 0.5, 0.6], [0.2, 0.25, 0.3]
# A speedrun small enough for a CPU: the recipe's structure with narrow layers and few images.
TINY_SPEEDRUN = (
    "experiment=cifar10_speedrun",
    "model.widths=[8,16,16]",
    "trainer.max_epochs=2",
    "trainer.batch_size=64",
    "trainer.eval_batch_size=128",
    "trainer.progress_bar=false",
    "trainer.deterministic=true",
)


def _images(n: int = 16, size: int = 6) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=_gen(1))


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_normalize_matches_the_textbook_formula_and_honours_channels_last() -> None:
    images = _images()
    expected = (images.float() / 255 - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[
        :, None, None
    ]
    plain = BatchAugment(MEAN, STD, 0, False).normalize(images)
    nhwc = BatchAugment(MEAN, STD, 0, False, channels_last=True).normalize(images)
    torch.testing.assert_close(plain, expected)
    torch.testing.assert_close(nhwc, expected)
    assert nhwc.is_contiguous(memory_format=torch.channels_last)
    assert not plain.is_contiguous(memory_format=torch.channels_last)


def test_each_image_gets_its_own_translation_and_flip() -> None:
    images, pad = _images(64), 2
    augment = BatchAugment([0.0] * 3, [1 / 255] * 3, crop_padding=pad, hflip=True)
    out = augment.train(images, _gen(3)).round().to(torch.uint8)
    padded = F.pad(images, (pad, pad, pad, pad))
    seen: set[tuple[int, int, bool]] = set()
    for image, source in zip(out, padded, strict=True):
        matches = [
            (dy, dx, flip)
            for dy in range(2 * pad + 1)
            for dx in range(2 * pad + 1)
            for flip in (False, True)
            if torch.equal(image, _crop(source, dy, dx, 6, flip))
        ]
        assert matches, "an output image is not a translated (and maybe mirrored) input"
        seen.add(matches[0])
    assert len(seen) > 10  # per-image parameters, not one crop for the whole batch
    assert {flip for _, _, flip in seen} == {False, True}
    again = augment.train(images, _gen(3))
    torch.testing.assert_close(again, out.float())


def _crop(padded: torch.Tensor, dy: int, dx: int, size: int, flip: bool) -> torch.Tensor:
    window = padded[:, dy : dy + size]
    if flip:
        window = window.flip(-1)
        return window[:, :, padded.shape[-1] - size - dx : padded.shape[-1] - dx]
    return window[:, :, dx : dx + size]


def test_linear_schedule_rises_to_the_peak_then_falls_to_the_end_ratio() -> None:
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=2.0)
    schedule = linear(optimizer, epochs=4, steps_per_epoch=5, pct_start=0.25, start_ratio=0.1)
    lrs = []
    for _ in range(20):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert lrs[0] == pytest.approx(0.2)
    assert max(lrs) == pytest.approx(2.0) and lrs.index(max(lrs)) == 5
    rising, falling = lrs[:6], lrs[5:]
    assert rising == sorted(rising) and len(set(rising)) == 6
    assert falling == sorted(falling, reverse=True) and len(set(falling)) == 15
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.0)


@pytest.mark.parametrize(("channels", "size"), [(1, 8), (3, 32)])
def test_speednet_handles_digits_and_cifar_shapes(channels: int, size: int) -> None:
    model = SpeedNet(channels, 10, size, widths=[4, 8, 8, 8])
    assert model(torch.randn(2, channels, size, size)).shape == (2, 10)


def _trainer(*overrides: str) -> object:
    return compose_config("experiment=digits", *overrides).trainer


def test_auto_switches_are_on_for_cuda_only_and_explicit_values_win() -> None:
    cuda = torch.device("cuda")
    assert enabled(None, cuda) and not enabled(None, CPU)
    assert enabled(True, CPU) and not enabled(False, cuda)


def test_fused_optimizer_switch_reaches_the_optimizer() -> None:
    model = nn.Linear(4, 2)
    for optimizer_name in ("sgd", "adamw"):
        cfg = compose_config("experiment=digits", f"optimizer={optimizer_name}")
        fused = build_optimizer(
            cfg.optimizer, model.parameters(), _trainer("trainer.fused_optimizer=true"), CPU
        )
        default = build_optimizer(cfg.optimizer, model.parameters(), cfg.trainer, CPU)
        assert fused.defaults["fused"] is True
        assert not default.defaults["fused"]
        loss = model(torch.randn(3, 4)).sum()
        loss.backward()
        fused.step()


def test_channels_last_and_compile_keep_plain_state_dict_keys() -> None:
    model = SpeedNet(3, 10, 8, widths=[4, 8])
    keys = set(model.state_dict())
    trainer_cfg = _trainer(
        "trainer.channels_last=true", "trainer.compile=true", "trainer.compile_backend=eager"
    )
    model = accelerate_model(model, trainer_cfg, CPU)
    conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert model(torch.randn(2, 3, 8, 8)).shape == (2, 10)
    assert set(model.state_dict()) == keys


def test_cudnn_benchmark_cannot_be_forced_on_a_deterministic_run() -> None:
    trainer_cfg = _trainer("trainer.cudnn_benchmark=true", "trainer.deterministic=true")
    with pytest.raises(ConfigError, match=r"trainer\.cudnn_benchmark"):
        accelerate_model(nn.Linear(2, 2), trainer_cfg, CPU)


def test_accelerate_data_sets_batch_layout_and_keeps_cpu_data_in_place() -> None:
    cfg = compose_config("experiment=digits", "trainer.channels_last=true")
    data = build_data(cfg.dataset, cfg.seed)
    placed = accelerate_data(data, cfg.trainer, CPU)
    assert placed.augment.channels_last
    assert placed.train.images.data_ptr() == data.train.images.data_ptr()


class _LeftHalf(nn.Module):
    """Logits from the left half of the image only: a flip changes them."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., : x.shape[-1] // 2].flatten(1)[:, :3]


def test_tta_hflip_scores_the_mean_logits_of_image_and_mirror() -> None:
    images = _images(8)
    labels = torch.randint(0, 3, (8,), generator=_gen(2))
    batches = list(zip(images.split(4), labels.split(4), strict=True))
    normalize = BatchAugment(MEAN, STD, 0, False).normalize
    model = _LeftHalf()
    plain = evaluate(model, batches, normalize, CPU)
    tta = evaluate(model, batches, normalize, CPU, tta_hflip=True)
    inputs = normalize(images)
    mean_logits = (model(inputs) + model(inputs.flip(-1))) / 2
    expected = F.cross_entropy(mean_logits, labels, reduction="sum").item()
    assert tta.loss_sum == pytest.approx(expected, rel=1e-5)
    assert tta.loss_sum != pytest.approx(plain.loss_sum, rel=1e-3)
    assert torch.equal(tta.predictions, mean_logits.argmax(1))


def test_buffered_metrics_reach_mlflow_when_the_run_ends_even_on_failure(workdir: Path) -> None:
    with (
        pytest.raises(RuntimeError),
        mlflow_run(None, "buffer", "r", {}, flush_interval_s=3600) as run,
    ):
        run.log_metrics({"val_acc": 0.5}, 0)
        run.log_metrics({"val_acc": 0.7}, 1)
        client = mlflow.MlflowClient()
        assert client.get_metric_history(run.run_id, "val_acc") == []
        raise RuntimeError("boom")
    finished = mlflow.MlflowClient().get_run(run.run_id)
    assert finished.info.status == "FAILED"
    history = mlflow.MlflowClient().get_metric_history(run.run_id, "val_acc")
    assert [(m.step, m.value) for m in history] == [(0, 0.5), (1, 0.7)]


@pytest.mark.slow
def test_speedrun_recipe_trains_on_cifar_format_files_through_the_cli(workdir: Path) -> None:
    write_cifar10(workdir / "cifar")
    run_module(
        "vision_exp.train",
        [
            *TINY_SPEEDRUN,
            f"dataset.root={workdir / 'cifar'}",
            "dataset.download=false",
            "dataset.verify_checksums=false",
            "dataset.val_fraction=0.2",
            # Every switch the GPU recipe turns on, forced on here to run its CPU code path.
            "trainer.channels_last=true",
            "trainer.fused_optimizer=true",
            "trainer.compile=true",
            "trainer.compile_backend=eager",
            "trainer.save_checkpoints=true",
            "hydra.run.dir=run",
        ],
        workdir,
    )
    (run,) = mlflow_runs(workdir, "cifar10_speedrun")
    assert run.info.status == "FINISHED"
    assert run.data.params["model._target_"] == "vision_exp.models.speednet.SpeedNet"
    assert run.data.params["trainer.tta_hflip"] == "True"
    assert run.data.params["trainer.label_smoothing"] == "0.2"
    assert run.data.params["scheduler._target_"] == "vision_exp.optim.schedulers.linear"
    assert 0.0 <= run.data.metrics["test_acc"] <= 1.0
    history = mlflow.MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}").get_metric_history(
        run.info.run_id, "val_acc"
    )
    assert [m.step for m in history] == [0, 1]
    state = load_checkpoint(workdir / "run")
    assert not any(key.startswith("_orig_mod") for key in state["model"])
    assert state["model"]["features.0.weight"].shape == (8, 3, 3, 3)


@pytest.mark.slow
def test_speedrun_recipe_learns_synthetic_cifar_shaped_data(workdir: Path) -> None:
    run_module(
        "vision_exp.train",
        [
            *TINY_SPEEDRUN,
            "dataset=synthetic",
            "dataset.source.num_train=512",
            "dataset.source.num_test=128",
            "dataset.val_fraction=0.25",
            # Synthetic classes are fixed random pixel patterns: shifting or mirroring one makes
            # another pattern, so only here are the recipe's augmentations switched off.
            "dataset.augment.crop_padding=0",
            "dataset.augment.hflip=false",
            "trainer.batch_size=32",
            "trainer.max_epochs=3",
            "optimizer.lr=0.2",
            "mlflow.log_model=false",
        ],
        workdir,
    )
    (run,) = mlflow_runs(workdir, "cifar10_speedrun")
    # Ten classes: chance is 10%; the templates are easy, so the recipe must learn them.
    assert run.data.metrics["test_acc"] > 0.5


def test_bad_compile_mode_is_rejected_before_any_run_opens(workdir: Path) -> None:
    result = run_module(
        "vision_exp.train",
        ["experiment=digits", "debug=fast", "trainer.compile_mode=fastest"],
        workdir,
        check=False,
    )
    assert result.returncode == 1
    assert "trainer.compile_mode='fastest'" in result.stderr + result.stdout
    assert "max-autotune" in result.stderr + result.stdout
    assert mlflow_runs(workdir) == []


@pytest.mark.slow
@pytest.mark.parametrize(
    ("benchmark", "args", "expected"),
    [
        ("benchmarks.tracking", ["--epochs", "2", "--rounds", "1"], "log_model:"),
        (
            "benchmarks.gpu_throughput",
            [
                "--device=cpu",
                "--num-train=256",
                "--epochs=2",
                "--recipes=speedrun",
                "--",
                "model.widths=[4,8]",
                "trainer.batch_size=64",
                "trainer.compile=false",
            ],
            "framework/bare time per epoch",
        ),
    ],
    ids=["tracking", "gpu_throughput"],
)
def test_benchmarks_drive_the_framework_they_measure(
    workdir: Path, benchmark: str, args: list[str], expected: str
) -> None:
    """The in-process benchmarks build the trainer from its public pieces; they must keep up with
    them (the GPU check runs where no one can fix it on the spot)."""
    result = run_module(benchmark, args, workdir)
    assert expected in result.stdout
