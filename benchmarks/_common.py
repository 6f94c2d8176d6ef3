"""Shared by the benchmarks: machine description, medians, subprocess runs, result lines."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULT_PREFIX = "BENCH_RESULT "


def machine() -> str:
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        load = f"load average {os.getloadavg()[0]:.1f}"
    except OSError:
        load = "load unknown"
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    return (
        f"{platform.processor() or platform.machine()}, {cores} usable cores ({load}), {device}; "
        f"Python {platform.python_version()}, torch {torch.__version__}"
    )


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def emit(payload: object) -> None:
    """The one line a child benchmark process reports to its parent."""
    print(RESULT_PREFIX + json.dumps(payload), flush=True)


def run_child(args: Sequence[str], cwd: Path, **env: str) -> object:
    """Run ``python ARGS`` with this checkout importable; return what it ``emit``-ted (None for a
    command that emits nothing and succeeds)."""
    environment = {**os.environ, **env}
    environment["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])
    )
    result = subprocess.run(
        [sys.executable, *args], cwd=cwd, env=environment, capture_output=True, text=True
    )
    for line in reversed(result.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX) :])
    if result.returncode == 0:
        return None
    raise RuntimeError(f"{' '.join(args)} exited {result.returncode}\n{result.stderr[-3000:]}")
