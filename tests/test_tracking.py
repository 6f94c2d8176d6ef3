import contextlib
from pathlib import Path

import mlflow
import pytest

from vision_exp.tracking.mlflow_run import RunInterrupted, mlflow_run
from vision_exp.tracking.redact import flatten, redact_text, redacted_params
from vision_exp.tracking.uri import DEFAULT_TRACKING_URI, resolve_tracking_uri


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "postgresql+psycopg2://mlflow:s3cr3t@db:5432/mlflow",
            "postgresql+psycopg2://mlflow:***@db:5432/mlflow",
        ),
        ("http://user:pa:ss@host/x", "http://user:***@host/x"),
        (
            "s3://bucket/path?AWS_SECRET_ACCESS_KEY=abc123&region=eu",
            "s3://bucket/path?AWS_SECRET_ACCESS_KEY=***&region=eu",
        ),
        ("host=db password=hunter2 user=me", "host=db password=*** user=me"),
        ("sqlite:///mlflow.db", "sqlite:///mlflow.db"),
        ("http://mlflow:5000", "http://mlflow:5000"),
    ],
)
def test_redact_text(text: str, expected: str) -> None:
    assert redact_text(text) == expected


def test_flatten_and_redact_params() -> None:
    config = {
        "optimizer": {"lr": 0.1, "betas": [0.9, 0.99]},
        "mlflow": {"tracking_uri": "http://u:topsecret@host", "tags": {}},
        "storage": {"aws_secret_access_key": "abc", "password": None},
    }
    assert flatten(config)["optimizer.betas"] == [0.9, 0.99]
    params = redacted_params(config)
    assert params["optimizer.lr"] == 0.1
    assert params["mlflow.tracking_uri"] == "http://u:***@host"
    assert params["mlflow.tags"] == {}
    assert params["storage.aws_secret_access_key"] == "***"
    assert params["storage.password"] is None
    assert "topsecret" not in str(params)


def test_tracking_uri_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_tracking_uri(None) == DEFAULT_TRACKING_URI == "sqlite:///mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://env:5000")
    assert resolve_tracking_uri(None) == "http://env:5000"
    assert resolve_tracking_uri("http://cfg:5000") == "http://cfg:5000"


def _status(workdir: Path, run_id: str) -> str:
    return str(
        mlflow.MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}").get_run(run_id).info.status
    )


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (None, "FINISHED"),
        (ValueError, "FAILED"),
        (KeyboardInterrupt, "KILLED"),
        (RunInterrupted, "KILLED"),
    ],
)
def test_runs_always_end_with_a_final_status(
    workdir: Path, error: type[BaseException] | None, status: str
) -> None:
    run_id = ""
    expectation = pytest.raises(error) if error else contextlib.nullcontext()
    with expectation, mlflow_run(None, "statuses", "r", {"secret_tag": "x://u:pw@h"}) as run:
        run_id = run.run_id
        if error:
            raise error()
    assert _status(workdir, run_id) == status
    tags = mlflow.MlflowClient().get_run(run_id).data.tags
    assert tags["secret_tag"] == "x://u:***@h"


def test_params_beyond_mlflows_batch_limit(workdir: Path) -> None:
    config = {"group": {f"key{i}": i for i in range(250)}, "long": "x" * 7000}
    with mlflow_run(None, "params", None, {}) as run:
        run.log_params(config)
        run.log_metrics({"a": 1.0, "b": 2.0}, step=3)
    data = mlflow.MlflowClient().get_run(run.run_id).data
    assert len(data.params) == 251
    assert len(data.params["long"]) == 6000
    assert data.metrics == {"a": 1.0, "b": 2.0}


def test_folders_are_uploaded_redacted(workdir: Path) -> None:
    folder = workdir / ".hydra"
    folder.mkdir()
    (folder / "config.yaml").write_text("tracking_uri: http://admin:letmein@mlflow:5000\n")
    with mlflow_run(None, "artifacts", None, {}) as run:
        run.log_redacted_folder(folder, "hydra")
    local = mlflow.artifacts.download_artifacts(run_id=run.run_id, artifact_path="hydra")
    assert (
        Path(local) / "config.yaml"
    ).read_text() == "tracking_uri: http://admin:***@mlflow:5000\n"
