"""Log the trained network as an MLflow pytorch model that loads and serves anywhere."""

from __future__ import annotations

import copy
import platform

import mlflow
import numpy as np
import torch
import torchvision
from mlflow.models import infer_signature
from torch import Tensor, nn


def pip_requirements() -> list[str]:
    """Pinned explicitly: MLflow's requirement inference imports the model and takes 10-20 s while
    listing packages the model never uses."""
    return [
        f"torch=={torch.__version__.split('+')[0]}",
        f"torchvision=={torchvision.__version__.split('+')[0]}",
        f"numpy=={np.__version__}",
    ]


def log_model(model: nn.Module, example: Tensor, classes: list[str]) -> str:
    """Log a CPU copy in eval mode (the example is already normalised); return the model URI."""
    cpu_model = copy.deepcopy(model).cpu().eval()
    inputs = example.float().numpy()
    with torch.no_grad():
        outputs = cpu_model(torch.from_numpy(inputs)).numpy()
    info = mlflow.pytorch.log_model(
        cpu_model,
        name="model",
        signature=infer_signature(inputs, outputs),
        input_example=inputs,
        pip_requirements=pip_requirements(),
        # torch.export graph: loads without our code and without unpickling anything.
        serialization_format="pt2",
        metadata={"classes": classes, "python": platform.python_version()},
    )
    return str(info.model_uri)
