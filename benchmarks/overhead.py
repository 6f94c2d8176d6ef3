"""Benchmark 1, framework overhead: seconds per epoch of the same workload (the digits experiment:
SimpleCNN, AdamW + one-cycle, batch 64, crop augmentation, validation every epoch) through

- ours: ``python -m vision_exp.train experiment=digits`` with MLflow tracking and checkpoints on,
- bare: a hand-written loop (``_bare_loop.py``: no tracking, no checkpoints),
- lightning: a Lightning ``Trainer`` with its MLflow logger and default checkpointing.

Each runs in its own process, rounds interleave the three so machine load hits all alike, and the
first epoch (warm-up) is dropped. Per-epoch time covers training, validation, logging and
checkpointing: for ours the spacing of the per-epoch MLflow metric timestamps.

Usage: python -m benchmarks.overhead [--epochs 12] [--rounds 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
from pathlib import Path

from benchmarks._common import machine, median, run_child


def ours(epochs: int, folder: Path, threads: int) -> list[float]:
    import mlflow

    uri = f"sqlite:///{folder / 'mlflow.db'}"
    run_child(
        [
            "-m",
            "vision_exp.train",
            "experiment=digits",
            f"trainer.max_epochs={epochs}",
            "trainer.progress_bar=false",
            f"trainer.num_threads={threads}",
            "mlflow.log_model=false",
            "hydra.run.dir=ours",
        ],
        folder,
        MLFLOW_TRACKING_URI=uri,
    )
    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name("digits")
    assert experiment is not None
    (run,) = client.search_runs([experiment.experiment_id])
    stamps = sorted(m.timestamp for m in client.get_metric_history(run.info.run_id, "val_acc"))
    return [(b - a) / 1000 for a, b in itertools.pairwise(stamps)]


def bare(epochs: int, folder: Path, threads: int) -> list[float]:
    result = run_child(
        ["-m", "benchmarks._bare_loop", str(epochs)], folder, BENCH_THREADS=str(threads)
    )
    return list(result["epoch_s"][1:])  # type: ignore[index]


def lightning(epochs: int, folder: Path, threads: int) -> list[float]:
    uri = f"sqlite:///{folder / 'lightning.db'}"
    result = run_child(
        ["-m", "benchmarks._lightning_loop", str(epochs), uri], folder, BENCH_THREADS=str(threads)
    )
    return list(result["epoch_s"][1:])  # type: ignore[index]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=3)
    # One intra-op thread by default: on a shared machine, idle-spinning OpenMP threads make
    # multi-threaded timings swing by several times between runs.
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    contenders = {"bare": bare, "ours": ours, "lightning": lightning}
    per_round: dict[str, list[float]] = {name: [] for name in contenders}
    for round_number in range(args.rounds):
        for name, measure in contenders.items():
            with tempfile.TemporaryDirectory() as tmp:
                epoch_s = measure(args.epochs, Path(tmp), args.threads)
            per_round[name].append(median(epoch_s))
            print(f"round {round_number}: {name:9s} {median(epoch_s) * 1000:8.1f} ms/epoch")
    print(f"\nmachine: {machine()}")
    print(
        f"digits, {args.epochs} epochs (first dropped), {args.threads} thread(s), "
        f"median of {args.rounds} rounds:"
    )
    base = median(per_round["bare"])
    for name, values in per_round.items():
        value = median(values)
        print(f"  {name:9s} {value * 1000:8.1f} ms/epoch   x{value / base:.3f} of bare")
    ours_s, lightning_s = median(per_round["ours"]), median(per_round["lightning"])
    print(f"ours/bare = {ours_s / base:.3f} (target <= 1.05)")
    print(f"ours/lightning = {ours_s / lightning_s:.3f} (target < 1)")


if __name__ == "__main__":
    main()
