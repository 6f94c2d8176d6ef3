"""The training entry point as users run it: ``python -m vision_exp.train ...`` in a subprocess."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mlflow
import pytest

from tests.conftest import QUICK, mlflow_runs, run_module
from tests.datasets_on_disk import write_cifar10, write_cifar100, write_fashion_mnist
from vision_exp.engine.checkpoint import load_checkpoint

FIXTURE_DATA = ("dataset.download=false", "dataset.verify_checksums=false", "dataset.root=data")


def _output_dirs(workdir: Path) -> list[Path]:
    return sorted(p for p in (workdir / "outputs").glob("*/*") if p.is_dir())


def _artifacts(run_id: str, path: str = "") -> set[str]:
    client = mlflow.MlflowClient()
    found: set[str] = set()
    for item in client.list_artifacts(run_id, path):
        found |= _artifacts(run_id, item.path) if item.is_dir else {item.path}
    return found


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory: pytest.TempPathFactory, mlflow_template: Path) -> Path:
    """One quick digits run with a model logged, shared by the assertions below."""
    workdir = tmp_path_factory.mktemp("digits")
    shutil.copy(mlflow_template, workdir / "mlflow.db")
    run_module(
        "vision_exp.train",
        [*QUICK, "mlflow.log_model=true", "+mlflow.tags.db=postgresql://me:hunter2@db/x"],
        workdir,
    )
    return workdir


def test_run_is_finished_with_params_metrics_and_tags(digits_run: Path) -> None:
    mlflow.set_tracking_uri(f"sqlite:///{digits_run / 'mlflow.db'}")
    (run,) = mlflow_runs(digits_run)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "digits-simplecnn"
    params = run.data.params
    assert params["optimizer.lr"] == "0.003" and params["dataset.name"] == "digits"
    assert params["trainer.max_epochs"] == "2"
    history = mlflow.MlflowClient().get_metric_history(run.info.run_id, "val_acc")
    assert [m.step for m in history] == [0, 1]
    metrics = run.data.metrics
    assert {"train_loss", "val_loss", "lr", "epoch_time", "images_per_sec", "test_acc"} <= set(
        metrics
    )
    assert metrics["best_val_acc"] == max(m.value for m in history)
    tags = run.data.tags
    assert tags["dataset"] == "digits" and tags["model"] == "simplecnn"
    assert Path(tags["output_dir"]) == _output_dirs(digits_run)[0]
    assert tags["db"] == "postgresql://me:***@db/x"


def test_run_logs_config_report_and_model(digits_run: Path) -> None:
    mlflow.set_tracking_uri(f"sqlite:///{digits_run / 'mlflow.db'}")
    (run,) = mlflow_runs(digits_run)
    artifacts = _artifacts(run.info.run_id)
    assert {
        "hydra/config.yaml",
        "hydra/overrides.yaml",
        "hydra/hydra.yaml",
        "report/test_confusion_matrix.png",
        "report/training_curves.png",
        "report/test_per_class.csv",
        "report/test_metrics.json",
        "report/history.csv",
    } <= artifacts
    model = mlflow.pytorch.load_model(f"runs:/{run.info.run_id}/model")
    assert model is not None


def test_no_secret_reaches_params_tags_or_artifacts(digits_run: Path) -> None:
    mlflow.set_tracking_uri(f"sqlite:///{digits_run / 'mlflow.db'}")
    (run,) = mlflow_runs(digits_run)
    assert "hunter2" not in json.dumps(run.data.params) + json.dumps(run.data.tags)
    local = Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="hydra"))
    for file in local.iterdir():
        assert "hunter2" not in file.read_text(), file.name
    (output,) = _output_dirs(digits_run)
    assert "hunter2" not in (output / "train.log").read_text()


def test_output_folder_holds_checkpoints_report_and_log(digits_run: Path) -> None:
    (output,) = _output_dirs(digits_run)
    assert {"best.pt", "last.pt"} == {p.name for p in (output / "checkpoints").iterdir()}
    state = load_checkpoint(output / "checkpoints" / "last.pt")
    assert state["epoch"] == 1 and "hunter2" not in state["config"]
    report = json.loads((output / "report" / "test_metrics.json").read_text())
    assert len(report["confusion_matrix"]) == 10
    assert "MLflow run" in (output / "train.log").read_text()


def test_evaluate_cli_reproduces_the_test_accuracy(digits_run: Path) -> None:
    mlflow.set_tracking_uri(f"sqlite:///{digits_run / 'mlflow.db'}")
    (run,) = mlflow_runs(digits_run)
    expected = f"test: accuracy {run.data.metrics['test_acc']:.4f}"
    (output,) = _output_dirs(digits_run)
    from_checkpoint = run_module("vision_exp.evaluate", [str(output)], digits_run)
    assert expected in from_checkpoint.stdout
    from_mlflow = run_module(
        "vision_exp.evaluate",
        [f"runs:/{run.info.run_id}/model", "--output", "eval"],
        digits_run,
    )
    assert expected in from_mlflow.stdout
    assert (digits_run / "eval" / "test_confusion_matrix.png").is_file()


def test_evaluate_cli_rejects_a_missing_source(workdir: Path) -> None:
    result = run_module("vision_exp.evaluate", ["nowhere"], workdir, check=False)
    assert result.returncode == 1
    assert "No checkpoint at nowhere" in result.stderr


# Hydra reports these while composing. (It adds a traceback when a trace function is set, as
# coverage does in this suite, taking it for a debugger; users see the message alone.)
COMPOSITION_ERRORS = [
    ("optimizer.lr=abc", "Value 'abc' of type 'str' could not be converted to Float"),
    ("optimizer=foo", "Available options in 'optimizer'"),
    ("trainer.max_epoch=3", "Did you mean: 'max_epochs'"),
]
RANGE_ERRORS = [
    ("optimizer.lr=-1", "optimizer.lr=-1.0 is not allowed (expected a number > 0)"),
    ("trainer.max_epochs=0", "trainer.max_epochs=0 is not allowed (expected an integer >= 1)"),
    ("dataset.val_fraction=1.5", "dataset.val_fraction=1.5 is not allowed"),
]


@pytest.mark.parametrize(("override", "message"), COMPOSITION_ERRORS + RANGE_ERRORS)
def test_bad_input_fails_clearly_without_leaving_a_run(
    workdir: Path, override: str, message: str
) -> None:
    result = run_module("vision_exp.train", [*QUICK, override], workdir, check=False)
    assert result.returncode == 1
    assert message in result.stderr
    if (override, message) in RANGE_ERRORS:
        assert "Traceback" not in result.stderr
    assert mlflow_runs(workdir) == []


def test_missing_dataset_names_path_dataset_and_flag(workdir: Path) -> None:
    result = run_module(
        "vision_exp.train",
        ["dataset=cifar10", "dataset.root=/nonexistent", "dataset.download=false"],
        workdir,
        check=False,
    )
    assert result.returncode == 1
    assert "dataset=cifar10: no usable files under dataset.root=/nonexistent" in result.stderr
    assert result.stdout == ""
    assert "dataset.download=false" in result.stderr and "experiment=digits" in result.stderr
    assert "Traceback" not in result.stderr
    assert mlflow_runs(workdir, "vision_exp") == []


@pytest.mark.parametrize(
    ("writer", "overrides"),
    [
        (write_cifar10, ["dataset=cifar10", "model=simple_cnn"]),
        (write_cifar100, ["dataset=cifar100", "optimizer=adamw"]),
        (write_fashion_mnist, ["dataset=fashion_mnist", "scheduler=step"]),
    ],
    ids=["cifar10", "cifar100", "fashion_mnist"],
)
def test_trains_on_torchvision_files_written_in_the_official_formats(
    workdir: Path, writer: object, overrides: list[str]
) -> None:
    writer(workdir / "data")  # type: ignore[operator]
    run_module(
        "vision_exp.train",
        [
            *overrides,
            *FIXTURE_DATA,
            "debug=fast",
            "dataset.subset=null",
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=2",
            "mlflow.experiment_name=files",
        ],
        workdir,
    )
    (run,) = mlflow_runs(workdir, "files")
    assert run.info.status == "FINISHED"
    assert run.data.params["dataset.name"] == overrides[0].split("=")[1]


def test_synthetic_resnet_with_schedules_accumulation_and_clipping(workdir: Path) -> None:
    run_module(
        "vision_exp.train",
        [
            "dataset=synthetic",
            "dataset.source.image_size=16",
            "dataset.subset=96",
            "model=resnet18",
            "scheduler=cosine",
            "debug=fast",
            "trainer.grad_accum_steps=2",
            "trainer.grad_clip_norm=1.0",
            "trainer.label_smoothing=0.1",
            "mlflow.experiment_name=synthetic",
        ],
        workdir,
    )
    (run,) = mlflow_runs(workdir, "synthetic")
    assert run.info.status == "FINISHED"
    assert run.data.tags["model"] == "resnet18"


@pytest.mark.slow
def test_readme_quick_start_reaches_97_percent(workdir: Path) -> None:
    """README command 1: the full digits experiment, as a new user runs it."""
    run_module("vision_exp.train", ["experiment=digits"], workdir, timeout=900)
    (run,) = mlflow_runs(workdir)
    assert run.info.status == "FINISHED"
    assert run.data.metrics["test_acc"] >= 0.97
    assert "model" in {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id)} or (
        mlflow.search_logged_models(experiment_ids=[run.info.experiment_id], output_format="list")
    )
