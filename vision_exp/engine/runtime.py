"""Process-wide set-up a run needs before it builds anything: device, threads, seeds, precision."""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator

import numpy as np
import torch

from vision_exp.errors import ConfigError

PRECISIONS = {"32": None, "bf16": torch.bfloat16, "16": torch.float16}


def select_device(requested: str) -> torch.device:
    """``auto`` picks cuda > mps > cpu; anything else must be a device torch can use here."""
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(requested)
    except RuntimeError as error:
        raise ConfigError(
            f"trainer.device={requested!r} is not a device: use auto, cpu, cuda, cuda:N or mps."
        ) from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"trainer.device={requested!r} but CUDA is not available on this machine: "
            "use trainer.device=auto or cpu."
        )
    return device


def configure_threads(num_threads: int | None, processes: int = 1) -> int:
    """One intra-op thread per usable core, shared out among the ``processes`` of this job on this
    machine (DDP ranks): torch's default can exceed the cores a job may use (containers, Slurm,
    several sweep workers, several ranks), which slows every op down."""
    if num_threads is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
        num_threads = cores // processes
    torch.set_num_threads(max(1, num_threads))
    return torch.get_num_threads()


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
    # Process-wide: set it either way, so one run's choice does not leak into the next one.
    torch.use_deterministic_algorithms(deterministic)


@contextlib.contextmanager
def autocast(device: torch.device, precision: str, on_cpu: bool = False) -> Iterator[None]:
    """Mixed precision on CUDA; bf16 on CPU too when ``on_cpu`` (``trainer.cpu_autocast``: it pays
    on CPUs with AMX or AVX-512 BF16 and slows the others); elsewhere full precision."""
    dtype = PRECISIONS[precision]
    cpu_bf16 = on_cpu and device.type == "cpu" and dtype is torch.bfloat16
    if dtype is None or not (device.type == "cuda" or cpu_bf16):
        yield
        return
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield
