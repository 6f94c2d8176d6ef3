"""One MLflow run per training: opened before any epoch, always closed with a final status."""

from __future__ import annotations

import logging
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import RunStatus

from vision_exp.errors import RunInterrupted
from vision_exp.tracking.redact import redact_text, redacted_params
from vision_exp.tracking.uri import resolve_tracking_uri

log = logging.getLogger(__name__)

# MLflow caps one log_batch call at 100 params; larger configs go in several calls.
_PARAM_BATCH = 100
_METRIC_BATCH = 1000
_PARAM_VALUE_LIMIT = 6000

__all__ = ["RunInterrupted", "TrackedRun", "git_commit", "mlflow_run"]


class RunStopped(Exception):  # noqa: N818  (a deliberate stop, not an error)
    """Raised on purpose to end a run early (a pruned Optuna trial): its metrics are valid, so the
    run ends FINISHED, not FAILED; the exception still propagates to whoever asked for the stop."""


def git_commit() -> str | None:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
            cwd=Path(__file__).resolve().parent,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None


def redacted_tags(tags: Mapping[str, Any]) -> dict[str, str]:
    return {key: redact_text(str(value)) for key, value in tags.items() if value is not None}


class TrackedRun:
    """The active MLflow run, as the training code sees it.

    Metrics are buffered and sent in one request at most every ``flush_interval_s`` seconds: one
    request to a SQLite store costs ~10 ms, several percent of a short epoch, and a batch of many
    epochs costs about as much as one. ``flush`` runs when the run ends, however it ends.
    """

    def __init__(self, run_id: str, flush_interval_s: float = 0.0) -> None:
        self.run_id = run_id
        self.client = mlflow.MlflowClient()
        self.flush_interval_s = flush_interval_s
        self._pending: list[mlflow.entities.Metric] = []
        self._last_flush = time.monotonic()

    def log_params(self, config: Mapping[str, Any], reopened: bool = False) -> list[str]:
        """Log the flattened config; return the keys whose value differs from one already logged.

        MLflow refuses to change a logged param, so a reopened run (a resume) only adds new keys.
        """
        params = [
            mlflow.entities.Param(key, str(value)[:_PARAM_VALUE_LIMIT])
            for key, value in redacted_params(config).items()
        ]
        logged = self.client.get_run(self.run_id).data.params if reopened else {}
        changed = [p.key for p in params if p.key in logged and logged[p.key] != p.value]
        params = [p for p in params if p.key not in logged]
        for start in range(0, len(params), _PARAM_BATCH):
            self.client.log_batch(self.run_id, params=params[start : start + _PARAM_BATCH])
        return changed

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        timestamp = int(time.time() * 1000)
        self._pending.extend(
            mlflow.entities.Metric(key, float(value), timestamp, step)
            for key, value in metrics.items()
        )
        if time.monotonic() - self._last_flush >= self.flush_interval_s:
            self.flush()

    def flush(self) -> None:
        """Send the buffered metrics (MLflow takes at most 1,000 per request)."""
        for start in range(0, len(self._pending), _METRIC_BATCH):
            self.client.log_batch(self.run_id, metrics=self._pending[start : start + _METRIC_BATCH])
        self._pending.clear()
        self._last_flush = time.monotonic()

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self.client.log_batch(
            self.run_id,
            tags=[mlflow.entities.RunTag(k, v) for k, v in redacted_tags(tags).items()],
        )

    def log_artifacts(self, folder: Path, artifact_path: str | None = None) -> None:
        mlflow.log_artifacts(str(folder), artifact_path=artifact_path, run_id=self.run_id)

    def log_redacted_folder(self, folder: Path, artifact_path: str) -> None:
        """Upload text files with credentials redacted (Hydra's saved configs hold URIs)."""
        with tempfile.TemporaryDirectory() as staging:
            for source in sorted(folder.glob("*")):
                if source.is_file():
                    target = Path(staging) / source.name
                    target.write_text(
                        redact_text(source.read_text(encoding="utf-8")), encoding="utf-8"
                    )
            mlflow.log_artifacts(staging, artifact_path=artifact_path, run_id=self.run_id)


class NullRun(TrackedRun):
    """The run as DDP ranks other than 0 see it: they compute the same metrics, rank 0 logs them
    to the job's one MLflow run, and these calls do nothing."""

    def __init__(self) -> None:
        self.run_id = ""

    def log_params(self, config: Mapping[str, Any], reopened: bool = False) -> list[str]:
        return []

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        pass

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        pass

    def log_artifacts(self, folder: Path, artifact_path: str | None = None) -> None:
        pass

    def log_redacted_folder(self, folder: Path, artifact_path: str) -> None:
        pass


@contextmanager
def mlflow_run(
    tracking_uri: str | None,
    experiment_name: str,
    run_name: str | None,
    tags: Mapping[str, Any],
    run_id: str | None = None,
    flush_interval_s: float = 0.0,
) -> Iterator[TrackedRun]:
    """Start (or with ``run_id``, reopen) a run and end it FINISHED, FAILED or KILLED.

    MLflow's own context manager marks a KeyboardInterrupt FAILED; a user who pressed Ctrl-C, or a
    scheduler that sent SIGTERM, killed the run, and the UI should say so.
    """
    mlflow.set_tracking_uri(resolve_tracking_uri(tracking_uri))
    experiment = mlflow.set_experiment(experiment_name)
    run = mlflow.start_run(
        run_id=run_id,
        experiment_id=experiment.experiment_id,
        run_name=run_name,
        tags=redacted_tags(tags),
    )
    status = RunStatus.to_string(RunStatus.FAILED)
    tracked = TrackedRun(run.info.run_id, flush_interval_s)
    try:
        yield tracked
        status = RunStatus.to_string(RunStatus.FINISHED)
    except (KeyboardInterrupt, RunInterrupted):
        status = RunStatus.to_string(RunStatus.KILLED)
        raise
    except RunStopped:
        status = RunStatus.to_string(RunStatus.FINISHED)
        raise
    finally:
        try:
            tracked.flush()
        finally:
            mlflow.end_run(status=status)
        log.info("MLflow run %s ended %s", run.info.run_id, status)
