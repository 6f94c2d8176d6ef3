"""The floor: a hand-written loop over the digits workload, no tracking, no checkpoints.

Usage: python benchmarks/_bare_loop.py EPOCHS
"""

from __future__ import annotations

import itertools
import sys
import time

import torch
import torch.nn.functional as F

from benchmarks import _digits_workload as work
from benchmarks._common import emit


def main(epochs: int) -> None:
    work.threads()
    train, val, augment = work.data()
    model = work.model()
    steps = len(train) // work.BATCH_SIZE
    optimizer, schedule = work.optimizer_and_schedule(model, epochs, steps)
    generator = torch.Generator().manual_seed(work.SEED)
    ends = [time.perf_counter()]
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(train), generator=generator)
        for step in range(steps):
            index = order[step * work.BATCH_SIZE : (step + 1) * work.BATCH_SIZE]
            images = augment.train(train.images[index], generator)
            loss = F.cross_entropy(model(images), train.labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        model.eval()
        correct = 0
        with torch.no_grad():
            for start in range(0, len(val), work.EVAL_BATCH_SIZE):
                logits = model(augment.normalize(val.images[start : start + work.EVAL_BATCH_SIZE]))
                labels = val.labels[start : start + work.EVAL_BATCH_SIZE]
                correct += int((logits.argmax(1) == labels).sum())
        ends.append(time.perf_counter())
    emit({"epoch_s": [b - a for a, b in itertools.pairwise(ends)], "val_acc": correct / len(val)})


if __name__ == "__main__":
    main(int(sys.argv[1]))
