"""Runs ``vision_exp.train`` with the given overrides and reports the wall-clock time of the first
optimizer step, then exits at once (the rest of the run is not start-up).

Usage: python -m benchmarks._first_step OVERRIDES...
"""

from __future__ import annotations

import os
import runpy
import sys
import time
from typing import Any

from torch.optim.optimizer import register_optimizer_step_post_hook

from benchmarks._common import emit


def _first_step(*_: Any) -> None:
    emit({"first_step_at": time.time()})
    os._exit(0)


if __name__ == "__main__":
    register_optimizer_step_post_hook(_first_step)
    sys.argv = ["vision_exp.train", *sys.argv[1:]]
    runpy.run_module("vision_exp.train", run_name="__main__")
