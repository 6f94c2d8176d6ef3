"""Median pruning against no pruning on the same digits sweep, side by side in one run.

    python benchmarks/pruning.py                  # 32 trials x 10 epochs per arm
    python benchmarks/pruning.py --trials 10 --epochs 6 dataset.subset=512   # a busy machine

Both arms use the same sampler seed, search space and training seed, each in its own scratch
directory (study, MLflow store, outputs). Prints the epochs trained, wall time and best val_acc of
each arm and the pruned/unpruned ratios; the target is <= 60% of the epochs for a best value within
0.5 points.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import optuna

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Arm:
    pruner: str
    epochs: int
    seconds: float
    best: float
    pruned: int


def run_arm(pruner: str, trials: int, epochs: int, seed: int, overrides: list[str]) -> Arm:
    with tempfile.TemporaryDirectory(prefix=f"bench-{pruner}-") as scratch:
        workdir = Path(scratch)
        command = [
            sys.executable,
            "-m",
            "vision_exp.train",
            "-m",
            "hydra/sweeper=optuna",
            f"hydra/sweeper/pruner={pruner}",
            "experiment=digits",
            f"seed={seed}",
            f"trainer.max_epochs={epochs}",
            "trainer.progress_bar=false",
            "mlflow.log_model=false",
            f"hydra.sweeper.n_trials={trials}",
            "hydra.sweeper.study_name=bench",
            *overrides,
        ]
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])
            ),
            "MLFLOW_TRACKING_URI": f"sqlite:///{workdir / 'mlflow.db'}",
        }
        start = time.perf_counter()
        sweep = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True)
        if sweep.returncode != 0:
            sys.exit(f"the {pruner} sweep exited {sweep.returncode}:\n{sweep.stderr[-3000:]}")
        seconds = time.perf_counter() - start
        study = optuna.load_study(study_name="bench", storage=f"sqlite:///{workdir / 'optuna.db'}")
        return Arm(
            pruner=pruner,
            epochs=sum(len(trial.intermediate_values) for trial in study.trials),
            seconds=seconds,
            best=study.best_value,
            pruned=sum(trial.state.name == "PRUNED" for trial in study.trials),
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--trials", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("overrides", nargs="*", help="more overrides for both arms")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    arms = [
        run_arm(p, args.trials, args.epochs, args.seed, args.overrides) for p in ("median", "none")
    ]
    print(
        f"digits sweep: {args.trials} trials x {args.epochs} epochs, seed {args.seed}",
        " ".join(args.overrides),
    )
    print(f"{'pruner':<8} {'epochs':>7} {'pruned':>7} {'wall s':>8} {'best val_acc':>13}")
    for arm in arms:
        print(
            f"{arm.pruner:<8} {arm.epochs:>7} {arm.pruned:>7} {arm.seconds:>8.1f} {arm.best:>13.4f}"
        )
    pruned, full = arms
    print(
        f"median/none: epochs {pruned.epochs / full.epochs:.0%}, "
        f"wall time {pruned.seconds / full.seconds:.0%}, "
        f"best val_acc {100 * (pruned.best - full.best):+.2f} points"
    )


if __name__ == "__main__":
    main()
