"""DDP pieces that need no second process: shards, batch-size semantics, misuse caught up front."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig

from tests.conftest import QUICK, compose_config, mlflow_runs, run_module
from vision_exp.config.validate import validate_config
from vision_exp.data.datamodule import Split
from vision_exp.distributed import (
    DistributedContext,
    get_rank,
    get_world_size,
    is_main_process,
    reduce_dict,
    scale_for_world,
    setup,
    shard_bounds,
    world_params,
)
from vision_exp.engine.loop import EvalResult, TrainStats
from vision_exp.errors import ConfigError

CPU = torch.device("cpu")


def ranks(world_size: int) -> list[DistributedContext]:
    """Each rank's view of a job, as far as pure sharding goes (no process group needed)."""
    return [DistributedContext(CPU, rank=r, world_size=world_size) for r in range(world_size)]


@pytest.mark.parametrize("num_samples", [1, 7, 10, 101, 1000])
@pytest.mark.parametrize("world_size", [1, 2, 3, 4])
def test_training_shards_are_disjoint_equal_and_cover_all_but_a_remainder(
    num_samples: int, world_size: int
) -> None:
    shards = [rank.train_order(num_samples, seed=3, epoch=5) for rank in ranks(world_size)]
    taken = torch.cat(shards)
    assert {len(shard) for shard in shards} == {num_samples // world_size}
    assert len(set(taken.tolist())) == len(taken), "a sample is on two ranks"
    assert set(taken.tolist()) <= set(range(num_samples))
    assert num_samples - len(taken) == num_samples % world_size


def test_training_shards_are_reshuffled_every_epoch_and_alike_on_every_rank() -> None:
    rank0, rank1 = ranks(2)
    assert not torch.equal(rank0.train_order(100, 0, epoch=0), rank0.train_order(100, 0, epoch=1))
    # Ranks derive their shares from one permutation: the same call gives the same share.
    assert torch.equal(rank1.train_order(100, 0, 2), ranks(2)[1].train_order(100, 0, 2))
    # Over the epochs, the samples a remainder leaves out change, so none is never trained on.
    seen = {
        int(i) for epoch in range(20) for r in (rank0, rank1) for i in r.train_order(9, 0, epoch)
    }
    assert seen == set(range(9))


@pytest.mark.parametrize("num_samples", [0, 1, 2, 7, 101])
@pytest.mark.parametrize("world_size", [1, 2, 3, 5])
def test_evaluation_shards_cover_every_sample_exactly_once_in_order(
    num_samples: int, world_size: int
) -> None:
    split = Split(torch.zeros(num_samples, 1, 2, 2, dtype=torch.uint8), torch.arange(num_samples))
    shards = [rank.eval_shard(split) for rank in ranks(world_size)]
    assert torch.equal(torch.cat([shard.labels for shard in shards]), split.labels)
    sizes = [len(shard) for shard in shards]
    assert max(sizes) - min(sizes) <= 1
    assert [
        b - a for a, b in (shard_bounds(num_samples, r, world_size) for r in range(world_size))
    ] == sizes


def test_rank_seeds_differ_and_rank_zero_matches_a_single_process() -> None:
    seeds = [rank.rank_seed(42) for rank in ranks(4)]
    assert seeds[0] == DistributedContext(CPU).rank_seed(42) == 42
    assert len(set(seeds)) == 4


def test_a_single_process_context_passes_results_through() -> None:
    alone = DistributedContext(CPU)
    result = EvalResult(3.0, 2, 4, torch.tensor([1, 0, 1, 1]), torch.tensor([1, 1, 0, 1]))
    assert alone.reduce_eval(result, 4) is result
    stats = TrainStats(loss=0.5, accuracy=0.25, images=8, seconds=2.0)
    assert alone.reduce_train(stats) is stats
    assert alone.any(True) and not alone.any(False)
    assert reduce_dict({"a": 2, "b": 1.5}) == {"a": 2.0, "b": 1.5}
    model = torch.nn.Linear(2, 2)
    assert alone.wrap(model) is model


def test_rank_queries_read_the_launcher_before_a_process_group_exists(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert (get_rank(), get_world_size(), is_main_process()) == (0, 1, True)
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert (get_rank(), get_world_size(), is_main_process()) == (3, 4, False)


def ddp_config(*overrides: str) -> DictConfig:
    return compose_config(*QUICK, "distributed=ddp", *overrides)


@pytest.mark.parametrize(
    ("overrides", "world_size", "per_rank", "lr_factor"),
    [
        ((), 2, 16, 1.0),  # debug=fast: batch 32, global by default
        (("distributed.lr_scaling=linear",), 4, 8, 1.0),  # global batch unchanged: nothing to scale
        (("distributed.batch_size_scope=per_rank",), 4, 32, 1.0),
        (("distributed.batch_size_scope=per_rank", "distributed.lr_scaling=linear"), 4, 32, 4.0),
    ],
)
def test_batch_size_scope_and_linear_lr_scaling(
    overrides: tuple[str, ...], world_size: int, per_rank: int, lr_factor: float
) -> None:
    cfg = ddp_config(*overrides)
    scaled = scale_for_world(cfg, world_size)
    assert scaled.trainer.batch_size == per_rank
    assert scaled.optimizer.lr == pytest.approx(cfg.optimizer.lr * lr_factor)
    assert cfg.trainer.batch_size == 32, "the config as given is left alone"
    params = world_params(cfg, scaled, world_size)["distributed"]
    assert params["global_batch_size"] == per_rank * world_size
    assert params["effective_lr"] == scaled.optimizer.lr


def test_single_process_config_is_not_rescaled() -> None:
    cfg = compose_config(*QUICK)
    assert scale_for_world(cfg, 1) is cfg
    assert world_params(cfg, cfg, 1) == {}


def test_a_global_batch_that_does_not_split_evenly_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"trainer.batch_size=32 .* multiple of 3"):
        scale_for_world(ddp_config(), 3)


@pytest.mark.parametrize(
    ("overrides", "env", "message"),
    [
        ((), {"WORLD_SIZE": "2", "RANK": "0"}, "add distributed=ddp"),
        (
            ("distributed=ddp", "trainer.skip_nonfinite_loss=true"),
            {"WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"},
            "skip_nonfinite_loss",
        ),
        (
            ("distributed=ddp", "distributed.backend=nccl", "trainer.device=cpu"),
            {"WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"},
            "needs CUDA",
        ),
        (
            ("distributed=ddp", "distributed.sync_batchnorm=true", "trainer.device=cpu"),
            {"WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"},
            "sync_batchnorm",
        ),
        (
            ("distributed=ddp", "trainer.device=mps"),
            {"WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"},
            "use auto, cuda or cpu",
        ),
    ],
)
def test_misuse_is_refused_before_joining_a_process_group(
    overrides: tuple[str, ...], env: dict[str, str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    cfg = compose_config(*QUICK, *overrides)
    with pytest.raises(ConfigError, match=message):
        setup(cfg.distributed, cfg.trainer.device, cfg.trainer.skip_nonfinite_loss)


def test_invalid_ddp_settings_name_the_key_and_the_choices() -> None:
    cfg = ddp_config("distributed.backend=mpi", "distributed.lr_scaling=sqrt")
    with pytest.raises(ConfigError) as error:
        validate_config(cfg)
    assert "distributed.backend='mpi' is not allowed (expected one of auto, nccl, gloo)" in str(
        error.value
    )
    assert "distributed.lr_scaling='sqrt'" in str(error.value)


def test_ddp_without_torchrun_prints_the_torchrun_command(workdir: Path) -> None:
    result = run_module("vision_exp.train", [*QUICK, "distributed=ddp"], workdir, check=False)
    output = result.stderr + result.stdout
    assert result.returncode == 1, output
    assert (
        "`torchrun --nproc_per_node=2 -m vision_exp.train experiment=digits debug=fast "
        "trainer.deterministic=true distributed=ddp`" in output
    )
    assert "Traceback" not in output
    assert mlflow_runs(workdir) == [], "a refused command leaves no MLflow run"
