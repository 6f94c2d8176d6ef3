"""The sweep's MLflow run: every trial's run is nested under it, and it ends holding the results.

It is driven through ``MlflowClient`` rather than ``mlflow.start_run``: with Hydra's basic launcher
the trials run in the sweeper's own process, where an active fluent run would clash with theirs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Metric, RunStatus, RunTag
from mlflow.exceptions import MlflowException

from vision_exp.tracking.mlflow_run import redacted_tags
from vision_exp.tracking.uri import resolve_tracking_uri
from vision_exp.tuning.tags import PARENT_RUN_TAG, STATE_TAG, TRIAL_TAG

log = logging.getLogger(__name__)


class ParentRun:
    def __init__(self, client: mlflow.MlflowClient, run_id: str, experiment_id: str) -> None:
        self.client = client
        self.run_id = run_id
        self.experiment_id = experiment_id

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self.client.log_batch(
            self.run_id, tags=[RunTag(key, value) for key, value in redacted_tags(tags).items()]
        )

    def log_metric(self, key: str, value: float, step: int) -> None:
        metric = Metric(key, value, int(time.time() * 1000), step)
        self.client.log_batch(self.run_id, metrics=[metric])

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def tag_trial(self, number: int, state: str) -> None:
        """Mark trial ``number``'s run with the state the study recorded (a job that failed before
        opening its run has none)."""
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=(
                f"tags.`{PARENT_RUN_TAG}` = '{self.run_id}' and tags.`{TRIAL_TAG}` = '{number}'"
            ),
        )
        for run in runs:
            self.client.set_tag(run.info.run_id, STATE_TAG, state)


@contextmanager
def parent_run(
    tracking_uri: str | None, experiment_name: str, run_name: str, previous_run_id: str | None
) -> Iterator[ParentRun]:
    """Reopen the study's run from an earlier sweep (resume) or start one; end it with a status."""
    client = mlflow.MlflowClient(resolve_tracking_uri(tracking_uri))
    experiment_id = _experiment_id(client, experiment_name)
    run_id = _reopen(client, previous_run_id, experiment_id) or (
        client.create_run(experiment_id, run_name=run_name).info.run_id
    )
    status = RunStatus.to_string(RunStatus.FAILED)
    try:
        yield ParentRun(client, run_id, experiment_id)
        status = RunStatus.to_string(RunStatus.FINISHED)
    except (KeyboardInterrupt, SystemExit):
        status = RunStatus.to_string(RunStatus.KILLED)
        raise
    finally:
        client.set_terminated(run_id, status)
        log.info("MLflow sweep run %s ended %s", run_id, status)


def _experiment_id(client: mlflow.MlflowClient, name: str) -> str:
    """Get or create; sweeps sharing a study may start together and race to create it."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return str(experiment.experiment_id)
    try:
        return str(client.create_experiment(name))
    except MlflowException:
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return str(experiment.experiment_id)


def _reopen(client: mlflow.MlflowClient, run_id: str | None, experiment_id: str) -> str | None:
    if run_id is None:
        return None
    try:
        run = client.get_run(run_id)
    except MlflowException:
        return None
    if run.info.experiment_id != experiment_id or run.info.lifecycle_stage != "active":
        return None
    client.update_run(run_id, status=RunStatus.to_string(RunStatus.RUNNING))
    return run_id
