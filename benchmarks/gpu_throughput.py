"""The GPU check: the speedrun recipe and ResNet-18 on synthetic CIFAR-shaped data (50,000
training images) through ``python -m vision_exp.train``, beside a bare loop on the same model,
optimizer settings, precision, memory layout, compile mode and batch size, in one call.

Reports training images/s and seconds per epoch (the training pass only, as the framework's
``images_per_sec`` and ``epoch_time`` metrics measure it), first epoch (compile, autotuning)
excluded. Run through benchmarks/gpu_check.sh; ``--device cpu --num-train 512`` checks the
mechanics on a CPU.

Usage: python -m benchmarks.gpu_throughput [--device cuda] [--num-train 50000] [--epochs 4]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

import vision_exp.config  # noqa: F401  (registers schemas)
from benchmarks._common import machine, median, run_child
from vision_exp.config.paths import CONFIG_DIR
from vision_exp.data.batches import epoch_order, train_batches
from vision_exp.data.datamodule import build_data
from vision_exp.engine.acceleration import accelerate_data, accelerate_model, build_optimizer
from vision_exp.experiment import build_model

RECIPES = {
    "speedrun": ["experiment=cifar10_speedrun"],
    "resnet18": ["experiment=cifar10_resnet18", "trainer.compile=true"],
}


def overrides(recipe: str, args: argparse.Namespace) -> list[str]:
    return [
        *RECIPES[recipe],
        "dataset=synthetic",
        f"dataset.source.num_train={args.num_train}",
        f"dataset.source.num_test={max(1, args.num_train // 5)}",
        "dataset.val_fraction=0.02",
        f"trainer.max_epochs={args.epochs}",
        f"trainer.device={args.device}",
        "trainer.progress_bar=false",
        "mlflow.log_model=false",
        *args.extra,
    ]


def framework(recipe: str, args: argparse.Namespace, folder: Path) -> tuple[float, float]:
    """(images/s, s/epoch) from the run's own metrics."""
    import mlflow

    uri = f"sqlite:///{folder / 'mlflow.db'}"
    run_child(
        ["-m", "vision_exp.train", *overrides(recipe, args), f"mlflow.experiment_name={recipe}"],
        folder,
        MLFLOW_TRACKING_URI=uri,
    )
    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name(recipe)
    assert experiment is not None
    (run,) = client.search_runs([experiment.experiment_id])
    history = client.get_metric_history(run.info.run_id, "images_per_sec")[1:]
    seconds = client.get_metric_history(run.info.run_id, "epoch_time")[1:]
    return median([m.value for m in history]), median([m.value for m in seconds])


def compose_recipe(recipe: str, args: argparse.Namespace) -> DictConfig:
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose("train", overrides(recipe, args))


def bare(recipe: str, args: argparse.Namespace) -> tuple[float, float]:
    """The same work by hand: model, SGD (fused on CUDA), bf16 autocast, label smoothing."""
    cfg = compose_recipe(recipe, args)
    device = torch.device(args.device)
    torch.manual_seed(cfg.seed)
    data = accelerate_data(build_data(cfg.dataset, cfg.seed), cfg.trainer, device)
    model = accelerate_model(build_model(cfg.model, data).to(device), cfg.trainer, device)
    optimizer = build_optimizer(cfg.optimizer, model.parameters(), cfg.trainer, device)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=cfg.trainer.label_smoothing)
    dtype = torch.bfloat16 if cfg.trainer.precision == "bf16" else torch.float32
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    rates, seconds = [], []
    for epoch in range(cfg.trainer.max_epochs):
        order = epoch_order(len(data.train), cfg.seed, epoch)
        images_seen = 0
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        for images, labels in train_batches(data.train, order, cfg.trainer.batch_size):
            inputs = data.augment.train(images.to(device, non_blocking=True), generator)
            labels = labels.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=dtype, enabled=device.type == "cuda"):
                loss = loss_fn(model(inputs), labels)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            images_seen += labels.shape[0]
        if device.type == "cuda":
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - started
        if epoch > 0:
            rates.append(images_seen / elapsed)
            seconds.append(elapsed)
    return median(rates), median(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--num-train", type=int, default=50_000)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("extra", nargs="*", help="further overrides for both sides")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    for recipe in args.recipes:
        with tempfile.TemporaryDirectory() as tmp:
            ours_rate, ours_s = framework(recipe, args, Path(tmp))
        bare_rate, bare_s = bare(recipe, args)
        print(
            f"{recipe}: {args.num_train} images, {args.epochs} epochs (first excluded)\n"
            f"  framework {ours_rate:10,.0f} img/s  {ours_s:7.3f} s/epoch\n"
            f"  bare loop {bare_rate:10,.0f} img/s  {bare_s:7.3f} s/epoch\n"
            f"  framework/bare time per epoch = {ours_s / bare_s:.3f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
