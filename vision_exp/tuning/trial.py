"""The job side of a trial: find the trial the sweeper asked for, report every epoch, stop when
the pruner says so."""

from __future__ import annotations

import logging
from pathlib import Path

import optuna
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig

from vision_exp.engine.trainer import EpochCallback
from vision_exp.tracking.mlflow_run import RunStopped
from vision_exp.tuning.storage import absolute_storage_url, open_storage

log = logging.getLogger(__name__)

# The study records the sweeper's pruner config (a user attribute) so every job, in any process or
# on any machine, prunes by the same rule.
PRUNER_ATTR = "pruner"
PRUNER_TARGETS = ("optuna.pruners.*",)


class TrialPruned(optuna.TrialPruned, RunStopped):
    """Optuna's signal to the sweeper (recorded PRUNED) that also ends the MLflow run FINISHED."""


class TrialReporter:
    """Reports the monitored metric as the trial's intermediate value, step = epoch."""

    def __init__(self, trial: optuna.Trial, monitor: str) -> None:
        self.trial = trial
        self.monitor = monitor

    def __call__(self, epoch: int, metrics: dict[str, float]) -> None:
        value = metrics[self.monitor]
        self.trial.report(value, epoch)
        if self.trial.should_prune():
            message = (
                f"Trial {self.trial.number} pruned after epoch {epoch}: {self.monitor}={value:.4f}."
            )
            log.info("%s", message)
            raise TrialPruned(message)


def open_trial(storage_url: str, study_name: str, number: int) -> optuna.Trial:
    """The RUNNING trial ``number`` the sweeper asked for, through Optuna's public storage API."""
    storage = open_storage(storage_url)
    study_id = storage.get_study_id_from_name(study_name)
    pruner_cfg = storage.get_study_user_attrs(study_id).get(PRUNER_ATTR)
    pruner = (
        instantiate(pruner_cfg, _execution_whitelist_=PRUNER_TARGETS)
        if pruner_cfg
        else optuna.pruners.NopPruner()
    )
    study = optuna.load_study(study_name=study_name, storage=storage, pruner=pruner)
    trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, number)
    return optuna.Trial(study, trial_id)


def trial_callbacks(cfg: DictConfig) -> list[EpochCallback]:
    """Nothing for a plain run; a reporter for a job the Optuna sweeper launched."""
    tuning = cfg.get("tuning")
    if tuning is None or tuning.trial_number is None:
        return []
    hydra_cfg = HydraConfig.get()
    url = absolute_storage_url(str(hydra_cfg.sweeper.storage), Path(hydra_cfg.runtime.cwd))
    trial = open_trial(url, tuning.study_name, tuning.trial_number)
    return [TrialReporter(trial, cfg.optimized_metric)]
