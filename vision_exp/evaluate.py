"""``python -m vision_exp.evaluate SOURCE``: score a trained model on a split and print the report.

SOURCE is a checkpoint, a run's output folder (its best checkpoint), or an MLflow model URI
(``runs:/ID/model``, ``models:/NAME@ALIAS``, ``models:/NAME/VERSION``, ``models:/m-ID``). The
model's own run config says which dataset and split to rebuild; dotted overrides change it
(``dataset.root=/data/cifar``).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

import vision_exp.config  # noqa: F401  (registers resolvers used by saved configs)
from vision_exp.data.batches import eval_batches
from vision_exp.data.datamodule import DataBundle, build_data
from vision_exp.engine.checkpoint import BEST, load_checkpoint
from vision_exp.engine.loop import evaluate
from vision_exp.engine.runtime import select_device
from vision_exp.errors import CheckpointError, VisionExpError
from vision_exp.evaluation.report import EvaluationReport, build_report, write_report
from vision_exp.experiment import build_model

SPLITS = ("test", "val", "train")


def _is_model_uri(source: str) -> bool:
    return source.startswith(("runs:/", "models:/"))


def _run_id_of(uri: str) -> str:
    """The training run behind a model URI (its saved config lives there)."""
    import mlflow

    client = mlflow.MlflowClient()
    if uri.startswith("runs:/"):
        return uri.removeprefix("runs:/").split("/", 1)[0]
    name = uri.removeprefix("models:/")
    if name.startswith("m-"):
        return str(client.get_logged_model(name).source_run_id)
    if "@" in name:
        model, alias = name.split("@", 1)
        return str(client.get_model_version_by_alias(model, alias).run_id)
    model, version = name.rsplit("/", 1)
    return str(client.get_model_version(model, version).run_id)


ModelLoader = Callable[[DataBundle, torch.device], nn.Module]


class ExportedModel(nn.Module):
    """An MLflow ``pt2`` model is a torch.export graph traced in eval mode: it has no train/eval
    switch and stays on the CPU it was loaded to; this wrapper gives the loop what it calls."""

    def __init__(self, graph: nn.Module) -> None:
        super().__init__()
        self.graph = graph

    def train(self, mode: bool = True) -> ExportedModel:
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        output: torch.Tensor = self.graph(images.cpu())
        return output


def load_from_mlflow(uri: str) -> tuple[DictConfig, ModelLoader]:
    import mlflow

    try:
        run_id = _run_id_of(uri)
        with tempfile.TemporaryDirectory() as folder:
            path = mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path="hydra/config.yaml", dst_path=folder
            )
            cfg = OmegaConf.load(path)
        model = ExportedModel(mlflow.pytorch.load_model(uri, map_location="cpu"))
    except mlflow.exceptions.MlflowException as error:
        raise VisionExpError(f"Cannot load {uri} from MLflow: {error.message}") from error
    assert isinstance(cfg, DictConfig)
    return cfg, lambda _data, _device: model


def load_from_checkpoint(source: str) -> tuple[DictConfig, ModelLoader]:
    path = Path(source)
    if path.is_dir() and (path / "checkpoints" / BEST).is_file():
        path = path / "checkpoints" / BEST
    state = load_checkpoint(path)
    if "config" not in state:
        raise CheckpointError(f"Checkpoint {path} holds no run config: it cannot be rebuilt.")
    cfg = OmegaConf.create(state["config"])
    assert isinstance(cfg, DictConfig)

    def rebuild(data: DataBundle, device: torch.device) -> nn.Module:
        model = build_model(cfg.model, data)
        model.load_state_dict(state["model"])
        return model.to(device)

    return cfg, rebuild


def evaluate_source(
    source: str, split: str, overrides: Sequence[str] = ()
) -> tuple[EvaluationReport, DataBundle]:
    cfg, load_model = (load_from_mlflow if _is_model_uri(source) else load_from_checkpoint)(source)
    cfg.merge_with_dotlist(list(overrides))
    data = build_data(cfg.dataset, cfg.seed)
    device = select_device("auto")
    model = load_model(data, device)
    result = evaluate(
        model, eval_batches(getattr(data, split), 512), data.augment.normalize, device
    )
    return build_report(result, data.classes, split), data


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vision_exp.evaluate", description=__doc__.split("\n\n", 1)[0]
    )
    parser.add_argument("source", help="checkpoint, run output folder, or MLflow model URI")
    parser.add_argument("--split", choices=SPLITS, default="test")
    parser.add_argument("--output", type=Path, help="also write JSON/CSV/PNG report files here")
    parser.add_argument(
        "--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI)"
    )
    parser.add_argument(
        "overrides", nargs="*", help="dotted config overrides, e.g. dataset.root=DIR"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.tracking_uri:
        import mlflow

        mlflow.set_tracking_uri(args.tracking_uri)
    try:
        report, _ = evaluate_source(args.source, args.split, args.overrides)
    except VisionExpError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(report.format())
    if args.output is not None:
        for path in write_report(report, args.output):
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
