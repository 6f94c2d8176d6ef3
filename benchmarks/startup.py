"""Benchmark 3, start-up: seconds from launching ``python -m vision_exp.train experiment=digits``
to its first optimizer step, beyond the seconds a bare ``import torch, torchvision, mlflow``
takes in the same interpreter (imports every training script pays).

Measured twice: into an MLflow store that already exists (the usual case) and into a fresh one
(MLflow then creates its SQLite schema, a one-off cost per store). Rounds interleave; medians.

Usage: python -m benchmarks.startup [--rounds 5]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from benchmarks._common import machine, median, run_child

IMPORTS = (
    "import time, torch, torchvision, mlflow\n"
    "from benchmarks._common import emit\n"
    "emit({'first_step_at': time.time()})"
)
TRAIN = ["-m", "benchmarks._first_step", "experiment=digits", "trainer.progress_bar=false"]


def seconds_to(args: list[str], folder: Path, uri: str) -> float:
    started = time.time()
    result = run_child(args, folder, MLFLOW_TRACKING_URI=uri)
    return float(result["first_step_at"]) - started  # type: ignore[index]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    imports, existing, fresh = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        store = f"sqlite:///{folder / 'mlflow.db'}"
        seconds_to(TRAIN, folder, store)  # creates the store the "existing" runs reuse
        for round_number in range(args.rounds):
            imports.append(seconds_to(["-c", IMPORTS], folder, store))
            existing.append(seconds_to(TRAIN, folder, store))
            fresh.append(seconds_to(TRAIN, folder, f"sqlite:///{folder / f'{round_number}.db'}"))
            print(
                f"round {round_number}: imports {imports[-1]:.2f} s, first step "
                f"{existing[-1]:.2f} s (existing store), {fresh[-1]:.2f} s (fresh store)"
            )
    base = median(imports)
    print(f"\nmachine: {machine()}")
    print(f"median of {args.rounds}: import torch+torchvision+mlflow {base:.2f} s")
    for name, values in (("existing store", existing), ("fresh store", fresh)):
        print(
            f"  first step, {name:15s} {median(values):.2f} s = imports + "
            f"{median(values) - base:.2f} s (target <= 2 s)"
        )


if __name__ == "__main__":
    main()
