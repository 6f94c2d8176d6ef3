"""Evaluate one checkpoint on evaluation sets of awkward sizes, through ``Trainer.evaluate``.

Under torchrun every rank loads the checkpoint into its (DDP-wrapped) trainer and rank 0 writes
what the job measured; the test compares it with one process evaluating alone::

    python -m torch.distributed.run --standalone --nproc_per_node=2 -m tests.ddp_eval_probe CKPT OUT
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir

import vision_exp.config  # noqa: F401  (registers schemas and resolvers)
from vision_exp.config.paths import CONFIG_DIR
from vision_exp.data.datamodule import Split, build_data
from vision_exp.distributed import is_main_process, session
from vision_exp.engine.checkpoint import load_checkpoint
from vision_exp.engine.trainer import Trainer
from vision_exp.experiment import build_trainer
from vision_exp.tracking.mlflow_run import NullRun

# name: (first N test images or all, limit_eval_batches); with eval batches of 16 and 2 ranks,
# none splits evenly into batches and 101, 7 and 1 do not split evenly into ranks either.
CASES: dict[str, tuple[int | None, int | None]] = {
    "101": (101, None),
    "7": (7, None),
    "1": (1, None),
    "all": (None, None),
    "3 batches": (None, 3),
}


def evaluate_cases(trainer: Trainer) -> dict[str, dict[str, Any]]:
    test = trainer.data.test
    results = {}
    for name, (size, limit) in CASES.items():
        split = test if size is None else Split(test.images[:size], test.labels[:size])
        result = trainer.evaluate(split, limit)
        results[name] = {
            "loss": result.loss,
            "accuracy": result.accuracy,
            "count": result.count,
            "predictions": result.predictions.tolist(),
            "targets": result.targets.tolist(),
        }
    return results


def probe(checkpoint: Path, output_dir: Path, distributed: str) -> dict[str, dict[str, Any]]:
    with initialize_config_dir(str(CONFIG_DIR)):
        cfg = compose(
            "train",
            ["experiment=digits", f"distributed={distributed}", "trainer.eval_batch_size=16"],
        )
    data = build_data(cfg.dataset, cfg.seed)
    with session(cfg.distributed, "cpu") as dist:
        trainer = build_trainer(cfg, data, dist.device, output_dir, NullRun(), (), dist)
        trainer.model.load_state_dict(load_checkpoint(checkpoint)["model"])
        return evaluate_cases(trainer)


if __name__ == "__main__":
    checkpoint, out = Path(sys.argv[1]), Path(sys.argv[2])
    results = probe(checkpoint, out.parent, "ddp")
    if is_main_process():
        out.write_text(json.dumps(results))
