"""A model that fails on one rank mid-training, for the DDP failure test (a real failure: an
exception in one process's forward, as a bug or a bad batch would raise)."""

from __future__ import annotations

import os

from torch import Tensor

from vision_exp.models.simple_cnn import SimpleCNN


class FailsOnRankOne(SimpleCNN):
    """SimpleCNN whose third training forward raises on rank 1 (the other ranks carry on)."""

    calls = 0

    def forward(self, x: Tensor) -> Tensor:
        if self.training and os.environ.get("RANK") == "1":
            self.calls += 1
            if self.calls == 3:
                raise RuntimeError("injected failure on rank 1")
        output: Tensor = super().forward(x)
        return output
