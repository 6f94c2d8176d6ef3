"""DDP under torchrun: the process group's life, rank queries, exact reductions, shards.

Every helper also answers in a single process (rank 0 of 1, no process group), so the training code
calls them unconditionally instead of branching on "am I distributed".
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import os
import shlex
import sys
from collections.abc import Iterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from vision_exp.data.batches import epoch_order
from vision_exp.data.datamodule import Split
from vision_exp.engine.loop import EvalResult, TrainStats
from vision_exp.engine.runtime import select_device
from vision_exp.errors import ConfigError

log = logging.getLogger(__name__)

# Rank r draws its augmentations and dropout from seed + r * stride: rank 0 matches a single
# process with the same seed, the other ranks get streams of their own.
RANK_SEED_STRIDE = 104_729


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def get_rank() -> int:
    """The process group's rank once it is up; before that the launcher's ``RANK`` (0 if none)."""
    return dist.get_rank() if dist.is_initialized() else _env_int("RANK", 0)


def get_world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else _env_int("WORLD_SIZE", 1)


def is_main_process() -> bool:
    """Rank 0 writes files, logs to MLflow and prints; the other ranks only compute."""
    return get_rank() == 0


def launched_by_torchrun() -> bool:
    """torchrun (or any launcher following its env:// contract) sets these on every worker."""
    return all(name in os.environ for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"))


def quiet_non_main_process() -> None:
    """On ranks other than 0: warnings and errors to the console only.

    Hydra gives every rank the same log file in the shared output folder; rank 0 alone writes it,
    and INFO lines would otherwise be printed once per rank.
    """
    if is_main_process():
        return
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, logging.FileHandler):
            root.removeHandler(handler)
            handler.close()
    root.setLevel(logging.WARNING)


def _collective_device() -> torch.device:
    """NCCL reduces CUDA tensors only; gloo reduces CPU ones."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def reduce_dict(values: Mapping[str, float]) -> dict[str, float]:
    """Sum each value over all ranks (sums, not means, so that ratios of them are exact); float64,
    so counts below 2**53 stay exact."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return {key: float(value) for key, value in values.items()}
    keys = sorted(values)  # the same order on every rank, whatever order each built its dict in
    tensor = torch.tensor(
        [float(values[key]) for key in keys], dtype=torch.float64, device=_collective_device()
    )
    dist.all_reduce(tensor)
    return dict(zip(keys, tensor.tolist(), strict=True))


def shard_bounds(num_samples: int, rank: int, world_size: int) -> tuple[int, int]:
    """Rank ``rank``'s contiguous slice of an evaluation set: sizes differ by at most one, nothing
    is padded or repeated, and concatenating the slices in rank order gives the set back."""
    base, extra = divmod(num_samples, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, DistributedDataParallel) else model


@dataclasses.dataclass(frozen=True)
class DistributedContext:
    """Where this process stands in the job, and the collective operations training needs."""

    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_world_size: int = 1
    enabled: bool = False
    sync_batchnorm: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def rank_seed(self, seed: int) -> int:
        return seed + RANK_SEED_STRIDE * self.rank

    def train_shard_size(self, num_samples: int) -> int:
        """Samples per rank and epoch: the same on every rank, so every rank takes the same number
        of steps (DDP hangs otherwise); up to ``world_size - 1`` samples sit out each epoch, a
        different few each time since the order is reshuffled (DistributedSampler's drop_last)."""
        return num_samples // self.world_size

    def train_order(self, num_samples: int, seed: int, epoch: int) -> Tensor:
        """This rank's training samples for ``epoch``: a disjoint share of one permutation that
        every rank draws alike (the same seed), reshuffled each epoch."""
        order = epoch_order(num_samples, seed, epoch, self.rank, self.world_size)
        return order[: self.train_shard_size(num_samples)]

    def wrap(self, model: nn.Module) -> nn.Module:
        """The module to train: DDP around ``model`` (converted to SyncBatchNorm if asked).

        Conversion keeps the parameter objects, so an optimizer built on ``model`` still holds them.
        """
        if not self.enabled:
            return model
        if self.sync_batchnorm:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)  # type: ignore[no-untyped-call]
        device_ids = [self.device] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=device_ids)

    def sync_buffers(self, model: nn.Module) -> None:
        """Give every rank rank 0's buffers (BatchNorm running statistics).

        DDP broadcasts them before each training forward, but that forward then updates each
        rank's copy from its own batch: without this, ranks would evaluate slightly different
        models, and none of them exactly the one rank 0 checkpoints.
        """
        if self.enabled:
            for buffer in model.buffers():
                dist.broadcast(buffer, src=0)

    def eval_shard(self, split: Split) -> Split:
        start, stop = shard_bounds(len(split), self.rank, self.world_size)
        return Split(split.images[start:stop], split.labels[start:stop])

    def reduce_eval(self, result: EvalResult, num_samples: int) -> EvalResult:
        """The whole evaluation set's result from each rank's shard of ``num_samples``: sums of
        loss, correct and count (not a mean of means), and every prediction in the set's order,
        on every rank, so each reports exactly what one process evaluating it all would."""
        if not self.enabled:
            return result
        totals = reduce_dict(
            {"loss_sum": result.loss_sum, "correct": result.correct, "count": result.count}
        )
        sizes = [shard_bounds(num_samples, r, self.world_size) for r in range(self.world_size)]
        lengths = [stop - start for start, stop in sizes]
        width = max(1, *lengths)
        device = _collective_device()
        local = torch.full((2, width), -1, dtype=torch.int64, device=device)
        local[0, : result.count] = result.predictions.to(device)
        local[1, : result.count] = result.targets.to(device)
        gathered = [torch.empty_like(local) for _ in range(self.world_size)]
        dist.all_gather(gathered, local)
        rows = torch.cat([part[:, :n] for part, n in zip(gathered, lengths, strict=True)], dim=1)
        return EvalResult(
            loss_sum=totals["loss_sum"],
            correct=round(totals["correct"]),
            count=round(totals["count"]),
            predictions=rows[0].cpu(),
            targets=rows[1].cpu(),
        )

    def reduce_train(self, stats: TrainStats) -> TrainStats:
        """Loss and accuracy over every rank's images; throughput of the whole job."""
        if not self.enabled:
            return stats
        totals = reduce_dict(
            {
                "loss_sum": stats.loss * stats.images,
                "correct": stats.accuracy * stats.images,
                "images": stats.images,
                "skipped": stats.skipped_batches,
            }
        )
        images = max(1.0, totals["images"])
        return TrainStats(
            loss=totals["loss_sum"] / images,
            accuracy=totals["correct"] / images,
            images=round(totals["images"]),
            seconds=stats.seconds,
            skipped_batches=round(totals["skipped"]),
        )

    def any(self, flag: bool) -> bool:
        """True on every rank when it is true on any: one decision, so no rank is left waiting."""
        return reduce_dict({"flag": float(flag)})["flag"] > 0

    def agree_on(self, value: str, what: str, advice: str) -> None:
        """Fail clearly, on every rank, when ranks computed different values of something they must
        share (DDP itself would train on, or hang, with no hint why)."""
        if not self.enabled:
            return
        values: list[Any] = [None] * self.world_size
        dist.all_gather_object(values, value)
        differing = [rank for rank, other in enumerate(values) if other != values[0]]
        if differing:
            rank = differing[0]
            shown = f": {values[0]!r} and {values[rank]!r}" if len(value) < 200 else ""
            raise ConfigError(
                f"The ranks of this job disagree on the {what} (rank 0 and rank {rank}{shown}). "
                + advice
            )


def _ddp_device(requested: str, local_rank: int) -> torch.device:
    """One device per process: ``cuda:LOCAL_RANK`` when CUDA is used, else the CPU."""
    if requested == "cpu" or (requested == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if requested not in ("auto", "cuda"):
        raise ConfigError(
            f"trainer.device={requested!r} with distributed=ddp: use auto, cuda or cpu (each "
            "process takes cuda:LOCAL_RANK; pick GPUs with CUDA_VISIBLE_DEVICES)."
        )
    select_device("cuda")  # a clear error when CUDA is absent
    if local_rank >= torch.cuda.device_count():
        raise ConfigError(
            f"Local rank {local_rank} has no GPU ({torch.cuda.device_count()} visible): start at "
            "most one process per GPU (--nproc_per_node), or set trainer.device=cpu."
        )
    return torch.device("cuda", local_rank)


def torchrun_command(processes: int) -> str:
    return shlex.join(
        ["torchrun", f"--nproc_per_node={processes}", "-m", "vision_exp.train", *sys.argv[1:]]
    )


def setup(cfg: DictConfig, requested_device: str, skip_nonfinite_loss: bool) -> DistributedContext:
    """Join the process group torchrun prepared (``distributed=ddp``), or run alone."""
    world_size = _env_int("WORLD_SIZE", 1)
    if not cfg.enabled:
        if world_size > 1:
            raise ConfigError(
                f"This process is one of {world_size} started by torchrun, but distributed=none "
                "would make each of them train the same model on its own: add distributed=ddp."
            )
        return DistributedContext(device=select_device(requested_device))
    if not launched_by_torchrun():
        processes = torch.cuda.device_count() or 2
        raise ConfigError(
            "distributed=ddp runs one process per device, started by torchrun (RANK, WORLD_SIZE, "
            f"MASTER_ADDR and MASTER_PORT are not set): `{torchrun_command(processes)}` "
            "(--nproc_per_node: the GPUs to use, or CPU processes). For one process, drop "
            "distributed=ddp."
        )
    if skip_nonfinite_loss:
        raise ConfigError(
            "trainer.skip_nonfinite_loss=true with distributed=ddp: a rank skipping a batch the "
            "others train on would desynchronise gradient averaging. Use it without DDP."
        )
    local_rank = _env_int("LOCAL_RANK", 0)
    device = _ddp_device(requested_device, local_rank)
    backend = cfg.backend
    if backend == "auto":
        backend = "nccl" if device.type == "cuda" else "gloo"
    if backend == "nccl" and device.type != "cuda":
        raise ConfigError(
            "distributed.backend=nccl needs CUDA devices: use distributed.backend=auto or gloo "
            "on CPUs."
        )
    if cfg.sync_batchnorm and device.type != "cuda":
        raise ConfigError(
            "distributed.sync_batchnorm=true needs CUDA devices (PyTorch's SyncBatchNorm does "
            "not run on CPUs): set it to false."
        )
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(
        backend,
        timeout=timedelta(seconds=cfg.timeout_s),
        device_id=device if device.type == "cuda" else None,
    )
    context = DistributedContext(
        device=device,
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        local_world_size=_env_int("LOCAL_WORLD_SIZE", 1),
        enabled=True,
        sync_batchnorm=cfg.sync_batchnorm,
    )
    log.info(
        "DDP: %d processes (%d on this node), backend %s, this is rank %d on %s",
        context.world_size,
        context.local_world_size,
        backend,
        context.rank,
        device,
    )
    return context


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def session(
    cfg: DictConfig, requested_device: str, skip_nonfinite_loss: bool = False
) -> Iterator[DistributedContext]:
    """``setup`` ... ``cleanup``, also when training raises (a sweep's next job starts afresh)."""
    context = setup(cfg, requested_device, skip_nonfinite_loss)
    try:
        yield context
    finally:
        cleanup()


def check_same_job(context: DistributedContext, cfg: DictConfig, output_dir: Path) -> None:
    """Every rank must write to one folder and train the same config, checked before any work."""
    context.agree_on(
        os.path.relpath(output_dir),
        "output folder",
        "Launch with torchrun, which lets them agree on the time in the folder's name, or set it "
        "on the command line (hydra.run.dir=outputs/$SLURM_JOB_ID, say).",
    )
    context.agree_on(
        OmegaConf.to_yaml(cfg, resolve=True),
        "config",
        "Every rank must compose the same one: a sweeper that picks parameters in each process "
        "(Optuna) cannot drive DDP jobs (docs/distributed_training.md, Sweeps of DDP jobs).",
    )


def scale_for_world(cfg: DictConfig, world_size: int) -> DictConfig:
    """``cfg`` in one process's terms: ``trainer.batch_size`` per rank, ``optimizer.lr`` scaled.

    ``distributed.batch_size_scope=global``: trainer.batch_size is the batch of one optimizer step
    summed over ranks (each rank takes its share), so a config means the same experiment on any
    number of processes. ``per_rank``: every rank takes trainer.batch_size, the step's batch grows
    with the world size, and ``distributed.lr_scaling=linear`` multiplies the lr by the same
    factor (Goyal et al., 2017).
    """
    if not cfg.distributed.enabled:
        return cfg
    batch = int(cfg.trainer.batch_size)
    if cfg.distributed.batch_size_scope == "global":
        if batch % world_size:
            raise ConfigError(
                f"trainer.batch_size={batch} is the global batch (distributed.batch_size_scope="
                f"global) and must split evenly over the {world_size} processes: use a multiple "
                f"of {world_size}, or distributed.batch_size_scope=per_rank."
            )
        per_rank = batch // world_size
    else:
        per_rank = batch
    factor = per_rank * world_size / batch if cfg.distributed.lr_scaling == "linear" else 1.0
    scaled = copy.deepcopy(cfg)
    scaled.trainer.batch_size = per_rank
    scaled.optimizer.lr = float(cfg.optimizer.lr) * factor
    return scaled


def world_params(cfg: DictConfig, scaled: DictConfig, world_size: int) -> dict[str, Any]:
    """What DDP changed, for MLflow beside the config as given."""
    if not cfg.distributed.enabled:
        return {}
    per_rank = int(scaled.trainer.batch_size)
    return {
        "distributed": {
            "world_size": world_size,
            "per_rank_batch_size": per_rank,
            "global_batch_size": per_rank * world_size,
            "effective_lr": float(scaled.optimizer.lr),
        }
    }
