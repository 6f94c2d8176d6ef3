from pathlib import Path

import pytest
import torch

from tests.conftest import compose_config
from vision_exp.data.datamodule import build_data
from vision_exp.engine import runtime
from vision_exp.engine.checkpoint import (
    CheckpointWriter,
    link_checkpoint,
    load_checkpoint,
    resolve_checkpoint,
    save_checkpoint,
)
from vision_exp.engine.early_stopping import EarlyStopping, metric_mode
from vision_exp.engine.trainer import Trainer
from vision_exp.errors import CheckpointError, ConfigError, TrainingError
from vision_exp.experiment import build_model
from vision_exp.optim.schedulers import constant, plateau


def test_metric_mode() -> None:
    assert metric_mode("val_loss") == "min"
    assert metric_mode("val_acc") == "max"


def test_early_stopping_counts_epochs_without_improvement() -> None:
    stopper = EarlyStopping("max", patience=2, min_delta=0.01)
    assert stopper.update(0.5, 0)
    assert not stopper.update(0.505, 1)  # within min_delta: not an improvement
    assert not stopper.should_stop
    assert not stopper.update(0.4, 2)
    assert stopper.should_stop
    restored = EarlyStopping("max", patience=2)
    restored.load_state_dict(stopper.state_dict())
    assert (restored.best, restored.best_epoch, restored.should_stop) == (0.5, 0, True)


def test_early_stopping_without_patience_never_stops() -> None:
    stopper = EarlyStopping("min", patience=None)
    for epoch in range(5):
        stopper.update(1.0 + epoch, epoch)
    assert not stopper.should_stop and stopper.best == 1.0


def test_checkpoint_round_trip_and_folder_resolution(tmp_path: Path) -> None:
    path = tmp_path / "run" / "checkpoints" / "last.pt"
    save_checkpoint({"model": {"w": torch.ones(2)}, "epoch": 3}, path)
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temporary file left
    assert resolve_checkpoint(tmp_path / "run") == path
    assert load_checkpoint(path.parent)["epoch"] == 3


def test_truncated_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint({"model": {"w": torch.ones(1000)}}, path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(path)


def test_non_checkpoints_are_refused(tmp_path: Path) -> None:
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="holds no model state"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="No checkpoint"):
        load_checkpoint(tmp_path / "missing")


def test_failed_save_leaves_the_previous_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint({"model": {"w": torch.zeros(1)}, "epoch": 1}, path)
    with pytest.raises(AttributeError, match="pickle"):
        save_checkpoint({"model": lambda: None}, path)  # unpicklable: fails mid-write
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_background_writer_saves_a_snapshot_and_links_best_to_last(tmp_path: Path) -> None:
    writer = CheckpointWriter()
    weights = torch.zeros(3)
    state = {"model": {"w": weights}, "history": [1.0], "epoch": 0}
    writer.submit(state, [tmp_path / "last.pt", tmp_path / "best.pt"])
    weights += 5  # training goes on while the file is written
    state["history"].append(2.0)
    writer.wait()
    saved = load_checkpoint(tmp_path / "best.pt")
    assert torch.equal(saved["model"]["w"], torch.zeros(3)) and saved["history"] == [1.0]
    assert (tmp_path / "best.pt").stat().st_ino == (tmp_path / "last.pt").stat().st_ino

    writer.submit({"model": {"w": weights}, "epoch": 1}, [tmp_path / "last.pt"])
    writer.close()
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 1
    assert load_checkpoint(tmp_path / "best.pt")["epoch"] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "last.pt"]


def test_background_write_failure_surfaces_and_keeps_the_previous_file(tmp_path: Path) -> None:
    writer = CheckpointWriter()
    writer.submit({"model": {"w": torch.ones(1)}, "epoch": 3}, [tmp_path / "last.pt"])
    writer.submit(
        {"model": {"w": torch.ones(1)}, "epoch": 4, "bad": _Unpicklable()}, [tmp_path / "last.pt"]
    )
    with pytest.raises(RuntimeError, match="no pickling"):
        writer.close()
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 3
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_link_falls_back_to_a_copy_without_hard_links(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    save_checkpoint({"model": {"w": torch.ones(1)}, "epoch": 2}, tmp_path / "last.pt")

    def no_links(self: Path, target: Path) -> None:
        raise OSError("hard links not supported")

    monkeypatch.setattr(Path, "hardlink_to", no_links)
    link_checkpoint(tmp_path / "last.pt", tmp_path / "best.pt")
    assert load_checkpoint(tmp_path / "best.pt")["epoch"] == 2
    assert (tmp_path / "best.pt").stat().st_ino != (tmp_path / "last.pt").stat().st_ino


class _Unpicklable:
    """Copies fine (the snapshot), fails when written (the background thread)."""

    def __deepcopy__(self, memo: dict[int, object]) -> "_Unpicklable":
        return self

    def __reduce__(self) -> str:
        raise RuntimeError("no pickling")


def test_device_selection() -> None:
    assert runtime.select_device("cpu").type == "cpu"
    assert runtime.select_device("auto").type in {"cpu", "cuda", "mps"}
    with pytest.raises(ConfigError, match=r"trainer\.device='gpu0'"):
        runtime.select_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            runtime.select_device("cuda")


def test_threads_and_seeding() -> None:
    assert runtime.configure_threads(1) == 1
    assert runtime.configure_threads(None) >= 1
    runtime.seed_everything(5, deterministic=False)
    first = torch.rand(3)
    runtime.seed_everything(5, deterministic=False)
    assert torch.equal(first, torch.rand(3))


def test_autocast_is_full_precision_on_cpu() -> None:
    with runtime.autocast(torch.device("cpu"), "bf16"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


def _trainer(tmp_path: Path, *overrides: str, logged: list[int] | None = None) -> Trainer:
    cfg = compose_config("experiment=digits", "debug=fast", *overrides)
    data = build_data(cfg.dataset, cfg.seed)
    model = build_model(cfg.model, data)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.optimizer.lr)
    scheduler = (
        plateau(optimizer, 2, 4, mode="max")
        if cfg.scheduler._target_.endswith("plateau")
        else constant(optimizer, 2, 4)
    )
    return Trainer(
        cfg.trainer,
        model,
        optimizer,
        scheduler,
        data,
        torch.device("cpu"),
        seed=0,
        monitor=cfg.optimized_metric,
        checkpoint_dir=tmp_path,
        log_metrics=lambda metrics, step: (logged if logged is not None else []).append(step),
    )


def test_fit_logs_each_epoch_and_saves_best_and_last(tmp_path: Path) -> None:
    logged: list[int] = []
    seen: list[int] = []
    trainer = _trainer(
        tmp_path, "trainer.grad_accum_steps=2", "trainer.grad_clip_norm=1.0", logged=logged
    )
    trainer.callbacks.append(lambda epoch, metrics: seen.append(epoch))
    result = trainer.fit()
    assert logged == seen == [0, 1]
    assert result.epochs_run == 2 and 0 <= result.best_value <= 1
    assert {p.name for p in tmp_path.iterdir()} == {"best.pt", "last.pt"}
    state = load_checkpoint(tmp_path / "last.pt")
    assert state["epoch"] == 1 and set(state) >= {"optimizer", "scheduler", "torch_rng"}


def test_plateau_schedule_and_early_stop(tmp_path: Path) -> None:
    trainer = _trainer(
        tmp_path,
        "scheduler=plateau",
        "trainer.max_epochs=6",
        "trainer.early_stopping.patience=1",
        "trainer.early_stopping.min_delta=0.99",
    )
    result = trainer.fit()
    assert result.stopped_early and result.epochs_run == 2


def test_nonfinite_loss_stops_with_epoch_step_and_lr(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path)
    trainer.model.register_forward_hook(lambda *_: torch.full((32, 10), float("nan")))
    with pytest.raises(TrainingError, match=r"Loss became nan at epoch 0, step 0 \(lr="):
        trainer.fit()


def test_nonfinite_batches_can_be_skipped(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path, "trainer.skip_nonfinite_loss=true")
    trainer.model.register_forward_hook(
        lambda _m, _i, out: out if trainer.model.training is False else out * float("inf")
    )
    result = trainer.fit()
    assert result.history[0]["skipped_batches"] == 4
