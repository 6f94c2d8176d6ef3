"""Checkpoints that survive a kill mid-write and load without unpickling arbitrary code."""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from vision_exp.errors import CheckpointError
from vision_exp.files import atomic_write

LAST = "last.pt"
BEST = "best.pt"


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Atomically (``atomic_write``): a reader sees the old checkpoint or the new one, never half of
    one."""
    with atomic_write(path) as tmp:
        torch.save(state, tmp)


def link_checkpoint(source: Path, target: Path) -> None:
    """Make ``target`` the same checkpoint as ``source`` without writing it twice: a hard link (a
    copy where the filesystem has none), renamed over ``target`` so readers never see half a file.
    Rewriting ``source`` later renames a new file over it, so ``target`` keeps this content."""
    handle, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(handle)
    tmp = Path(tmp_name)
    try:
        tmp.unlink()
        try:
            tmp.hardlink_to(source)
        except OSError:
            shutil.copyfile(source, tmp)
        tmp.replace(target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _save_to(state: dict[str, Any], paths: Sequence[Path]) -> None:
    save_checkpoint(state, paths[0])
    for path in paths[1:]:
        link_checkpoint(paths[0], path)


class CheckpointWriter:
    """Writes checkpoints on a background thread, one at a time and in order.

    ``torch.save`` plus ``fsync`` takes from 10 ms to far longer on a busy disk: on a short epoch
    that was most of the framework's cost over a bare loop (``benchmarks/overhead.py``). The loop
    hands over a copy of the state, taken at once, and goes on training. ``wait`` returns when
    everything handed over is on disk and re-raises a failed write; ``close`` waits, then stops the
    thread, so a run that ends in any way leaves its last checkpoint complete.
    """

    def __init__(self) -> None:
        self._executor: ThreadPoolExecutor | None = None
        self._pending: Future[None] | None = None

    def submit(self, state: dict[str, Any], paths: Sequence[Path]) -> None:
        """Save ``state`` to ``paths[0]``; the other paths become the same file."""
        snapshot = copy.deepcopy(state)
        self.wait()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="checkpoint-writer")
        self._pending = self._executor.submit(_save_to, snapshot, list(paths))

    def wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def close(self) -> None:
        try:
            self.wait()
        finally:
            if self._executor is not None:
                self._executor.shutdown()
                self._executor = None


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
