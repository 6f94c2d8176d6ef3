"""MLflow tags that nest a trial's run under its sweep's run; kept free of Optuna imports so that
plain training runs do not pay for them."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

PARENT_RUN_TAG = "mlflow.parentRunId"
STUDY_TAG = "optuna.study"
TRIAL_TAG = "optuna.trial_number"
STATE_TAG = "optuna.state"


def trial_tags(tuning: DictConfig | None) -> dict[str, Any]:
    if tuning is None or tuning.trial_number is None:
        return {}
    return {
        PARENT_RUN_TAG: tuning.parent_run_id,
        STUDY_TAG: tuning.study_name,
        TRIAL_TAG: tuning.trial_number,
    }
