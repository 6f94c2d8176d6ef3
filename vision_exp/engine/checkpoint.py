"""Checkpoints that survive a kill mid-write and load without unpickling arbitrary code."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from vision_exp.errors import CheckpointError

LAST = "last.pt"
BEST = "best.pt"


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over ``path`` (atomic on
    POSIX): a reader sees the old checkpoint or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as tmp:
            torch.save(state, tmp)
            tmp.flush()
            os.fsync(tmp.fileno())
        Path(tmp_name).replace(path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def resolve_checkpoint(location: str | Path) -> Path:
    """A checkpoint file, a ``checkpoints/`` folder or a run folder -> the checkpoint to load."""
    path = Path(location)
    for candidate in (path, path / LAST, path / "checkpoints" / LAST):
        if candidate.is_file():
            return candidate
    raise CheckpointError(
        f"No checkpoint at {path}: expected a .pt file, or a run folder holding checkpoints/{LAST}."
    )


def load_checkpoint(location: str | Path) -> dict[str, Any]:
    path = resolve_checkpoint(location)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointError(
            f"Checkpoint {path} cannot be read ({type(error).__name__}: {error}); it may be "
            "truncated or not a vision_exp checkpoint. Use another one (best.pt beside it) or "
            "start the run afresh."
        ) from error
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(
            f"Checkpoint {path} holds no model state: not a vision_exp checkpoint."
        )
    return state
