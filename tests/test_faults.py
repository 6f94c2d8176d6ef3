"""Faults a run must survive or report clearly: signals, NaN losses, an unreachable tracking
server, a saved config that no longer fits the schema."""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from tests.conftest import QUICK, compose_config, mlflow_runs, run_module
from vision_exp import replay
from vision_exp.config.saved import save_resolved
from vision_exp.engine.checkpoint import load_checkpoint, save_checkpoint
from vision_exp.engine.interrupt import check_interrupt, interrupt_handling, stop_requested
from vision_exp.engine.loop import StepContext, train_one_epoch
from vision_exp.engine.resume import load_resume_point
from vision_exp.errors import CheckpointError, ConfigError, RunInterrupted, TrackingError
from vision_exp.replay import replay_config
from vision_exp.tracking.reachability import check_tracking_server


def closed_port() -> int:
    """A local port nothing listens on (bound then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_first_signal_defers_second_stops_at_once() -> None:
    previous = signal.getsignal(signal.SIGTERM)
    with interrupt_handling():
        check_interrupt()
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop_requested() == signal.SIGTERM
        with pytest.raises(RunInterrupted) as deferred:
            check_interrupt()
        assert deferred.value.exit_code == 143
        with pytest.raises(RunInterrupted, match="second signal"):
            os.kill(os.getpid(), signal.SIGINT)
        assert signal.getsignal(signal.SIGINT) == signal.SIG_DFL
    assert signal.getsignal(signal.SIGTERM) == previous
    assert stop_requested() is None


def test_a_signal_after_the_last_check_stops_the_process_once_the_run_is_done() -> None:
    previous = signal.getsignal(signal.SIGINT)
    finishing = pytest.raises(RunInterrupted, match="came as the run was finishing")
    with finishing as stopped, interrupt_handling():
        check_interrupt()
        os.kill(os.getpid(), signal.SIGINT)  # during the test evaluation, say
    assert stopped.value.exit_code == 130
    assert signal.getsignal(signal.SIGINT) == previous
    assert stop_requested() is None


def test_skip_nonfinite_loss_skips_only_the_bad_batches() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    images = torch.randn(4, 8, 1, 2, 2)
    images[2, 0] = float("nan")
    batches = [(images[i], torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])) for i in range(4)]
    ctx = StepContext(
        optimizer=optimizer,
        step_scheduler=lambda: None,
        loss_fn=nn.CrossEntropyLoss(),
        device=torch.device("cpu"),
        precision="32",
        grad_accum_steps=1,
        grad_clip_norm=None,
        scaler=None,
        skip_nonfinite=True,
        progress_bar=False,
    )
    stats = train_one_epoch(model, batches, 4, lambda x: x, ctx, epoch=0)
    assert stats.skipped_batches == 1
    assert stats.images == 24
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_nan_loss_fails_the_run_with_epoch_step_and_lr(workdir: Path) -> None:
    result = run_module("vision_exp.train", [*QUICK, "optimizer.lr=1e30"], workdir, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Loss became nan at epoch 0, step" in output
    assert "lr=" in output and "trainer.skip_nonfinite_loss=true" in output
    (run,) = mlflow_runs(workdir)
    assert run.info.status == "FAILED"


def test_unreachable_tracking_server_fails_fast_without_leaking_the_password() -> None:
    started = time.monotonic()
    with pytest.raises(TrackingError) as error:
        check_tracking_server(f"http://alice:hunter2@127.0.0.1:{closed_port()}")
    assert time.monotonic() - started < 15
    assert "alice:***@127.0.0.1" in str(error.value)
    assert "hunter2" not in str(error.value)
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ


def test_unreachable_tracking_server_through_the_cli(workdir: Path) -> None:
    uri = f"http://alice:hunter2@127.0.0.1:{closed_port()}"
    # MLflow's own retries would take minutes; the timeout leaves room for a loaded machine.
    result = run_module(
        "vision_exp.train",
        [*QUICK, f"mlflow.tracking_uri='{uri}'"],
        workdir,
        check=False,
        timeout=60,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "alice:***@127.0.0.1" in output and "hunter2" not in output
    assert "track locally instead: mlflow.tracking_uri=sqlite:///mlflow.db" in output
    assert "Traceback" not in output
    assert not list(workdir.glob("outputs/*/*/checkpoints"))


def saved_run(folder: Path, **extra: object) -> Path:
    """A run folder as Hydra and run_training leave it, with ``extra`` keys added since."""
    cfg = OmegaConf.merge(OmegaConf.to_container(compose_config(*QUICK)), extra)
    hydra_dir = folder / ".hydra"
    hydra_dir.mkdir(parents=True)
    (hydra_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg), encoding="utf-8")
    save_resolved(cfg, hydra_dir)
    return folder


def test_replay_of_a_removed_key_names_it(workdir: Path) -> None:
    folder = saved_run(workdir / "old_run", trainer={"old_knob": 3})
    result = run_module("vision_exp.replay", [str(folder)], workdir, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "trainer.old_knob" in output and "~trainer.old_knob" in output
    assert "Traceback" not in output
    assert not (workdir / "outputs").exists()


def test_replay_can_drop_a_removed_key_and_keeps_secrets_out(tmp_path: Path) -> None:
    folder = saved_run(
        tmp_path / "old_run",
        trainer={"old_knob": 3},
        mlflow={"tracking_uri": "http://alice:hunter2@tracking.example:5000"},
    )
    resolved = (folder / ".hydra" / "resolved.yaml").read_text()
    config = replay_config(str(folder), ["~trainer.old_knob", "seed=7"], tmp_path)
    assert "old_knob" not in config["trainer"]
    assert config["seed"] == 7
    assert config["resume"] is None
    assert config["mlflow"]["tags"]["replay_of"] == str(folder.resolve())
    # resolved.yaml was written redacted; the unredacted value comes from Hydra's config.yaml.
    assert "hunter2" not in resolved
    assert config["mlflow"]["tracking_uri"] == "http://alice:hunter2@tracking.example:5000"
    (folder / ".hydra" / "config.yaml").write_text(resolved)
    fallback = replay_config(str(folder), ["~trainer.old_knob"], tmp_path)
    assert fallback["mlflow"]["tracking_uri"] is None


def test_replay_rejects_what_is_not_a_run(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="neither a folder nor an MLflow run id"):
        replay_config(str(tmp_path / "nowhere"), [], tmp_path)
    with pytest.raises(ConfigError, match="not a Hydra output folder"):
        replay_config(str(tmp_path), [], tmp_path)
    saved_run(tmp_path / "sweep" / "0")
    with pytest.raises(ConfigError, match="sweep folder with 1 jobs"):
        replay_config(str(tmp_path / "sweep"), [], tmp_path)


def test_failed_save_keeps_the_previous_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint({"model": {"w": torch.ones(2)}, "epoch": 0}, path)
    with pytest.raises(Exception, match="pickle"):
        save_checkpoint({"model": {"w": torch.zeros(2)}, "epoch": 1, "bad": lambda: 0}, path)
    assert load_checkpoint(path)["epoch"] == 0
    assert list(tmp_path.iterdir()) == [path]


def test_resume_needs_the_best_epochs_weights(tmp_path: Path) -> None:
    def state(epoch: int, best_epoch: int) -> dict[str, object]:
        stopping = {"best": 0.9, "best_epoch": best_epoch, "bad_epochs": epoch - best_epoch}
        return {
            "model": {"w": torch.full((2,), float(epoch))},
            "epoch": epoch,
            "early_stopping": stopping,
        }

    save_checkpoint(state(3, best_epoch=1), tmp_path / "last.pt")
    with pytest.raises(CheckpointError, match="is missing"):
        load_resume_point(tmp_path)
    save_checkpoint(state(2, best_epoch=2), tmp_path / "best.pt")
    with pytest.raises(CheckpointError, match="is not the best checkpoint"):
        load_resume_point(tmp_path)
    save_checkpoint(state(1, best_epoch=1), tmp_path / "best.pt")
    point = load_resume_point(tmp_path / "last.pt")
    assert point.epoch == 3
    assert point.best["model"]["w"].tolist() == [1.0, 1.0]


def test_replay_usage_errors(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for argv, shown in ((["replay"], "usage:"), (["replay", "outputs/x", "--cfg", "job"], "--cfg")):
        monkeypatch.setattr(sys, "argv", argv)
        with pytest.raises(SystemExit) as stopped:
            replay.main()
        assert stopped.value.code == 2
        captured = capsys.readouterr()
        assert shown in captured.out + captured.err
