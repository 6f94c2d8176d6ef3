"""Speed switches of ``trainer``: where the model, data and optimizer live and how they run.

Each switch is ``true``, ``false`` or ``null`` (auto). Auto turns a feature on where it pays on
this kind of device and off where it does not: channels_last, cudnn.benchmark, fused optimizer
steps and a GPU-resident dataset help on CUDA, and on a CPU they cost a copy or nothing at all;
``torch.compile`` pays back its compile time on CUDA within an epoch or two but rarely on a CPU.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
from collections.abc import Iterable
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn

from vision_exp.config.targets import build
from vision_exp.data.datamodule import DataBundle
from vision_exp.errors import ConfigError

log = logging.getLogger(__name__)

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
COMPILE_BACKENDS = ("inductor", "aot_eager", "eager", "cudagraphs")


def enabled(setting: bool | None, device: torch.device) -> bool:
    """An explicit true/false wins; null means on for CUDA, off elsewhere."""
    return device.type == "cuda" if setting is None else bool(setting)


def configure_backends(trainer_cfg: DictConfig, device: torch.device) -> None:
    """cudnn.benchmark times the conv algorithms once per input shape and keeps the fastest; it
    picks them nondeterministically, so a deterministic run cannot ask for it."""
    benchmark = enabled(trainer_cfg.cudnn_benchmark, device) and not trainer_cfg.deterministic
    if trainer_cfg.cudnn_benchmark and trainer_cfg.deterministic:
        raise ConfigError(
            "trainer.cudnn_benchmark=true cannot be combined with trainer.deterministic=true: "
            "set one of them to false (or cudnn_benchmark=null to pick it automatically)."
        )
    torch.backends.cudnn.benchmark = benchmark


def accelerate_data(data: DataBundle, trainer_cfg: DictConfig, device: torch.device) -> DataBundle:
    """Move the whole uint8 dataset to the device once (no host-to-device copy per batch; 50,000
    CIFAR images are 150 MB) and emit channels_last batches for a channels_last model."""
    data.augment.channels_last = enabled(trainer_cfg.channels_last, device)
    if not enabled(trainer_cfg.data_on_device, device):
        return data
    return dataclasses.replace(
        data, train=data.train.to(device), val=data.val.to(device), test=data.test.to(device)
    )


def accelerate_model(model: nn.Module, trainer_cfg: DictConfig, device: torch.device) -> nn.Module:
    """channels_last weights and an in-place ``Module.compile``: unlike ``torch.compile(model)`` it
    keeps the state_dict keys, so checkpoints and logged models are those of the plain model."""
    configure_backends(trainer_cfg, device)
    if enabled(trainer_cfg.channels_last, device):
        model = model.to(memory_format=torch.channels_last)
    if enabled(trainer_cfg.compile, device):
        options: dict[str, Any] = {"backend": trainer_cfg.compile_backend}
        if trainer_cfg.compile_backend == "inductor":
            options["mode"] = trainer_cfg.compile_mode
        model.compile(**options)
        log.info("torch.compile: %s", options)
    return model


def build_optimizer(
    optimizer_cfg: DictConfig,
    parameters: Iterable[nn.Parameter],
    trainer_cfg: DictConfig,
    device: torch.device,
) -> torch.optim.Optimizer:
    """The configured optimizer with ``fused=True`` (one kernel for the whole step) where it has
    that option, else ``foreach=True`` (one kernel per op over all parameters), when switched on."""
    factory = build(optimizer_cfg)
    options: dict[str, Any] = {}
    if enabled(trainer_cfg.fused_optimizer, device):
        accepted = inspect.signature(getattr(factory, "func", factory)).parameters
        options = next(({key: True} for key in ("fused", "foreach") if key in accepted), {})
    optimizer: torch.optim.Optimizer = factory(parameters, **options)
    return optimizer
