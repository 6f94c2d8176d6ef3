"""DDP end to end: real torchrun jobs of two CPU processes talking over gloo."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from tests.conftest import QUICK, mlflow_runs, run_module
from tests.ddp_eval_probe import CASES, probe
from vision_exp.data.batches import eval_batches
from vision_exp.data.datamodule import build_data
from vision_exp.engine.checkpoint import BEST, load_checkpoint
from vision_exp.engine.loop import evaluate
from vision_exp.experiment import build_model

pytestmark = pytest.mark.slow


def torchrun(
    module: str, args: list[str], workdir: Path, check: bool = True, **env: str
) -> subprocess.CompletedProcess[str]:
    """``torchrun --standalone --nproc_per_node=2 -m MODULE ARGS``; standalone picks a free port."""
    launcher = ["--standalone", "--nproc_per_node=2", "-m", module]
    return run_module("torch.distributed.run", [*launcher, *args], workdir, check, **env)


@pytest.fixture(scope="module")
def ddp_job(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One DDP training job, shared by the tests that inspect what it left behind."""
    workdir = tmp_path_factory.mktemp("ddp_job")
    result = torchrun("vision_exp.train", [*QUICK, "distributed=ddp"], workdir)
    return workdir, result.stdout + result.stderr


def test_a_torchrun_job_makes_one_folder_and_one_mlflow_run(ddp_job: tuple[Path, str]) -> None:
    workdir, output = ddp_job
    folders = list((workdir / "outputs").glob("*/*"))
    assert len(folders) == 1, f"one job, one folder: {folders}"
    folder = folders[0]
    assert sorted(path.name for path in (folder / ".hydra").iterdir()) == [
        "config.yaml",
        "hydra.yaml",
        "overrides.yaml",
        "resolved.yaml",
    ]
    log_text = (folder / "train.log").read_text()
    assert log_text.count("DDP: 2 processes") == 1, "only rank 0 writes the log file"
    assert "this is rank 0" in log_text
    assert "this is rank 1" not in log_text + output, "other ranks print warnings only"
    assert sorted(path.name for path in (folder / "checkpoints").iterdir()) == [
        "best.pt",
        "last.pt",
    ]

    runs = mlflow_runs(workdir)
    assert len(runs) == 1, [run.info.run_id for run in runs]
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert {"train_loss", "val_acc", "val_loss", "test_acc", "test_macro_f1"} <= set(
        run.data.metrics
    )
    params = run.data.params
    assert params["distributed.world_size"] == "2"
    assert params["distributed.per_rank_batch_size"] == "16"
    assert params["distributed.global_batch_size"] == params["trainer.batch_size"] == "32"


def test_the_checkpoint_loads_in_one_process_and_reproduces_the_jobs_test_accuracy(
    ddp_job: tuple[Path, str],
) -> None:
    workdir, _ = ddp_job
    folder = next((workdir / "outputs").glob("*/*"))
    cfg = OmegaConf.load(folder / ".hydra" / "config.yaml")
    data = build_data(cfg.dataset, cfg.seed)
    model = build_model(cfg.model, data)
    model.load_state_dict(load_checkpoint(folder / "checkpoints" / BEST)["model"])
    alone = evaluate(
        model, eval_batches(data.test, 64), data.augment.normalize, torch.device("cpu")
    )
    logged = mlflow_runs(workdir)[0].data.metrics
    assert alone.count == len(data.test)
    assert alone.accuracy == logged["test_acc"], "DDP's reduced accuracy is one process's, exactly"
    assert alone.loss == pytest.approx(logged["test_loss"], rel=1e-5)


def test_two_ranks_evaluate_exactly_like_one_process(
    ddp_job: tuple[Path, str], tmp_path: Path
) -> None:
    """Sizes that split unevenly over ranks and batches: nothing dropped, nothing counted twice."""
    workdir, _ = ddp_job
    checkpoint = next((workdir / "outputs").glob("*/*/checkpoints")) / BEST
    out = tmp_path / "ddp.json"
    torchrun("tests.ddp_eval_probe", [str(checkpoint), str(out)], tmp_path)
    two_ranks = json.loads(out.read_text())
    one_process = probe(checkpoint, tmp_path, "none")
    assert set(two_ranks) == set(one_process) == set(CASES)
    for name, alone in one_process.items():
        ddp = two_ranks[name]
        assert ddp["count"] == alone["count"] == len(alone["targets"]), name
        assert ddp["targets"] == alone["targets"], name
        assert ddp["predictions"] == alone["predictions"], name
        assert ddp["accuracy"] == alone["accuracy"], name
        assert ddp["loss"] == pytest.approx(alone["loss"], rel=1e-6), name
    assert one_process["3 batches"]["count"] == 48


def test_one_rank_failing_ends_the_whole_job_quickly(workdir: Path) -> None:
    """Rank 1 raises mid-epoch while rank 0 waits in a gradient all-reduce: the job must end,
    non-zero, long before the collective timeout would have rescued a hang."""
    timeout_s = 300
    started = time.monotonic()
    result = torchrun(
        "vision_exp.train",
        [
            *QUICK,
            "distributed=ddp",
            f"distributed.timeout_s={timeout_s}",
            "model._target_=tests.ddp_faults.FailsOnRankOne",
        ],
        workdir,
        check=False,
        VISION_EXP_TRUSTED_TARGETS="tests.ddp_faults.*",
    )
    elapsed = time.monotonic() - started
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "injected failure on rank 1" in output
    assert elapsed < timeout_s / 2, f"took {elapsed:.0f} s: a rank waited for the timeout"
    runs = mlflow_runs(workdir)
    assert len(runs) == 1
    assert runs[0].info.status in ("FAILED", "KILLED"), "the run is not left RUNNING"


def test_ranks_composing_different_configs_stop_before_any_run(workdir: Path) -> None:
    """What a sweeper sampling in each process would cause: refused instead of trained on."""
    result = torchrun(
        "vision_exp.train", [*QUICK, "distributed=ddp", "seed=${oc.env:RANK}"], workdir, check=False
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "The ranks of this job disagree on the config (rank 0 and rank 1)" in output
    assert mlflow_runs(workdir) == []
