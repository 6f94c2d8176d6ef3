"""Continue a run from its last completed epoch, exactly where an uninterrupted run would be.

Loading happens before any data, model or MLflow run is built, so a missing or truncated checkpoint
fails in seconds; restoring needs the built trainer. Both work on CPU tensors and touch nothing
rank-specific, so every DDP rank can call them alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vision_exp.engine.checkpoint import (
    BEST,
    LAST,
    load_checkpoint,
    resolve_checkpoint,
    save_checkpoint,
)
from vision_exp.engine.rng import set_rng_state
from vision_exp.engine.trainer import Trainer
from vision_exp.errors import CheckpointError

RUN_ID_KEY = "mlflow_run_id"


@dataclass
class ResumePoint:
    path: Path
    state: dict[str, Any]
    # The checkpoint of the best epoch: ``state`` itself when the last epoch was the best.
    best: dict[str, Any]

    @property
    def epoch(self) -> int:
        """The last completed epoch (0-based)."""
        return int(self.state["epoch"])

    @property
    def run_id(self) -> str | None:
        run_id = self.state.get(RUN_ID_KEY)
        return str(run_id) if run_id else None


def load_resume_point(location: str | Path) -> ResumePoint:
    """The checkpoint at ``location`` (a run folder or a ``.pt`` file) and the best epoch's weights.

    The final test evaluates the best epoch, which may be older than the last one: its weights come
    from ``best.pt`` beside the checkpoint, and must belong to the same run.
    """
    path = resolve_checkpoint(location)
    state = load_checkpoint(path)
    best_epoch = int(state.get("early_stopping", {}).get("best_epoch", -1))
    if best_epoch == int(state["epoch"]):
        return ResumePoint(path, state, state)
    best_path = path.parent / BEST
    if not best_path.is_file():
        raise CheckpointError(
            f"{path} says epoch {best_epoch} was the best, but {best_path} is missing: the final "
            "test needs those weights. Resume from a folder holding both last.pt and best.pt."
        )
    best = load_checkpoint(best_path)
    if int(best.get("epoch", -1)) != best_epoch or best.get(RUN_ID_KEY) != state.get(RUN_ID_KEY):
        raise CheckpointError(
            f"{best_path} (epoch {best.get('epoch')}) is not the best checkpoint of {path} "
            f"(epoch {best_epoch}): resume from the run folder they were both written to."
        )
    return ResumePoint(path, state, best)


def restore(trainer: Trainer, point: ResumePoint) -> None:
    """Put model, optimizer, scheduler, scaler, early stopping, history and RNGs back, and make
    ``fit`` start at the epoch after the checkpoint's."""
    state = point.state
    try:
        trainer.model.load_state_dict(state["model"])
        trainer.optimizer.load_state_dict(state["optimizer"])
        trainer.scheduler.load_state_dict(state["scheduler"])
    except (RuntimeError, ValueError, KeyError) as error:
        raise CheckpointError(
            f"{point.path} does not fit this run's model, optimizer or scheduler ({error}). "
            "Resume with the same model, optimizer and scheduler settings it was trained with."
        ) from error
    if trainer.scaler is not None and "scaler" in state:
        trainer.scaler.load_state_dict(state["scaler"])
    trainer.stopper.load_state_dict(state["early_stopping"])
    trainer.history = list(state["history"])
    trainer.best_state = point.best["model"]
    trainer.start_epoch = point.epoch + 1
    set_rng_state(state)


def copy_checkpoints(point: ResumePoint, checkpoint_dir: Path) -> None:
    """Seed the new output folder with the state resumed from, so that a run interrupted again
    before its next epoch ends can still be resumed from its own folder."""
    save_checkpoint(point.state, checkpoint_dir / LAST)
    save_checkpoint(point.best, checkpoint_dir / BEST)
