"""Benchmark 4, tracking cost: the time MLflow logging adds to an epoch of the digits run, and
the time ``log_model`` takes (explicit pip requirements, no requirement inference).

The digits experiment is trained in-process through the framework's own ``build_trainer`` with
its ``TrackedRun``; every ``log_metrics`` call (and the final flush) is timed, and divided by
the epoch time. Measured with metrics sent every epoch (``mlflow.flush_interval_s=0``) and with
the default buffering (``mlflow.flush_interval_s=2``). Rounds alternate the two; medians.

Usage: python -m benchmarks.tracking [--epochs 30] [--rounds 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

import vision_exp.config  # noqa: F401  (registers schemas)
from benchmarks._common import machine, median
from vision_exp.config.paths import CONFIG_DIR
from vision_exp.data.datamodule import build_data
from vision_exp.distributed import session
from vision_exp.experiment import build_trainer
from vision_exp.tracking.mlflow_run import TrackedRun, mlflow_run
from vision_exp.tracking.model_logging import log_model


class TimedRun:
    """The run as the trainer sees it, with a stopwatch on ``log_metrics``."""

    def __init__(self, run: TrackedRun) -> None:
        self.run, self.seconds = run, 0.0

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        started = time.perf_counter()
        self.run.log_metrics(metrics, step)
        self.seconds += time.perf_counter() - started


def one_run(folder: Path, epochs: int, interval: float) -> tuple[float, float, float]:
    """(seconds per epoch, logging seconds per epoch, log_model seconds)."""
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(
            "train",
            [
                "experiment=digits",
                f"trainer.max_epochs={epochs}",
                "trainer.progress_bar=false",
                f"mlflow.flush_interval_s={interval}",
            ],
        )
    data = build_data(cfg.dataset, cfg.seed)
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    with (
        session(cfg.distributed, "cpu") as dist,
        mlflow_run(uri, "tracking_bench", f"interval-{interval}", {}, None, interval) as run,
    ):
        timed = TimedRun(run)
        trainer = build_trainer(cfg, data, dist.device, folder, timed, (), dist)  # type: ignore[arg-type]
        started = time.perf_counter()
        trainer.fit()
        fit_s = time.perf_counter() - started
        flush_started = time.perf_counter()
        run.flush()
        timed.seconds += time.perf_counter() - flush_started
        example = data.augment.normalize(data.test.images[:4])
        started = time.perf_counter()
        log_model(trainer.model, example, data.classes)
        model_s = time.perf_counter() - started
    return fit_s / epochs, timed.seconds / epochs, model_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results: dict[float, list[tuple[float, float, float]]] = {0.0: [], 2.0: []}
    with tempfile.TemporaryDirectory() as tmp:
        one_run(Path(tmp) / "warm-up", 2, 0.0)  # creates the store's schema, warms the caches
        for round_number in range(args.rounds):
            for interval, rows in results.items():
                rows.append(
                    one_run(Path(tmp) / f"{round_number}-{interval}", args.epochs, interval)
                )
                epoch_s, log_s, model_s = rows[-1]
                print(
                    f"round {round_number}: flush_interval_s={interval}: epoch {epoch_s * 1000:.1f}"
                    f" ms, logging {log_s * 1000:.2f} ms/epoch, log_model {model_s:.2f} s"
                )
    print(f"\nmachine: {machine()}")
    print(f"digits, {args.epochs} epochs, {args.threads} thread(s), median of {args.rounds}:")
    for interval, rows in results.items():
        epoch_s = median([r[0] for r in rows])
        log_s = median([r[1] for r in rows])
        print(
            f"  flush_interval_s={interval}: epoch {epoch_s * 1000:.1f} ms, logging "
            f"{log_s * 1000:.2f} ms/epoch = {100 * log_s / epoch_s:.2f}% (target <= 1%)"
        )
    model_s = median([r[2] for rows in results.values() for r in rows])
    print(f"  log_model: {model_s:.2f} s (target <= 5 s)")


if __name__ == "__main__":
    main()
