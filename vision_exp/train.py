"""``python -m vision_exp.train``: the one Hydra entry point for training, sweeps and DDP."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

import vision_exp.config  # noqa: F401  (registers schemas and resolvers)
from vision_exp.config.paths import CONFIG_DIR
from vision_exp.distributed import quiet_non_main_process
from vision_exp.errors import RunInterrupted, VisionExpError
from vision_exp.experiment import run_training
from vision_exp.tuning.sweeper import register_sweeper
from vision_exp.tuning.trial import trial_callbacks

log = logging.getLogger("vision_exp.train")

# MLflow and Alembic narrate every database migration and artifact upload at INFO.
for noisy in ("mlflow", "alembic", "urllib3"):
    logging.getLogger(noisy).setLevel(logging.WARNING)
register_sweeper()


def run_job(cfg: DictConfig) -> float:
    """One Hydra job, whatever composed its config (``train``, ``replay``): user errors become
    one paragraph and a non-zero exit instead of a traceback."""
    hydra_cfg = HydraConfig.get()
    quiet_non_main_process()
    try:
        return run_training(cfg, Path(hydra_cfg.runtime.output_dir), callbacks=trial_callbacks(cfg))
    except VisionExpError as error:
        log.error("%s", error)
        if hydra_cfg.mode == RunMode.MULTIRUN:
            raise
        sys.exit(1)
    except RunInterrupted as stop:
        log.error("%s", stop)
        sys.exit(stop.exit_code)
    except KeyboardInterrupt:
        log.error("Interrupted; the MLflow run is marked KILLED.")
        sys.exit(130)


@hydra.main(config_path=str(CONFIG_DIR), config_name="train")
def main(cfg: DictConfig) -> float:
    return run_job(cfg)


if __name__ == "__main__":
    main()
