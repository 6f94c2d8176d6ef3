"""Config schemas, resolvers and validation; importing this package registers the schemas."""

from omegaconf import OmegaConf

from vision_exp.config.launch import launch_time, main_process_only
from vision_exp.config.schema import register_schemas
from vision_exp.engine.early_stopping import metric_mode

register_schemas()
# `${metric_mode:${optimized_metric}}`: min for losses, max otherwise (the plateau schedule).
OmegaConf.register_resolver("metric_mode", metric_mode, replace=True)
# `${launch_time:%H-%M-%S}`: `${now:}`, but one instant for all ranks of a torchrun job, so they
# share one output folder. `${main_process_only:x}`: x on rank 0, null on the others. Cached, so
# Hydra hands the sweep's value to jobs in other processes (joblib workers) as it does for `now`.
OmegaConf.register_resolver(
    "launch_time", lambda fmt: launch_time().strftime(fmt), replace=True, use_cache=True
)
OmegaConf.register_resolver("main_process_only", main_process_only, replace=True)
# `${optuna_direction:${optimized_metric}}`: the Optuna sweeper's default direction.
OmegaConf.register_resolver(
    "optuna_direction", lambda metric: f"{metric_mode(metric)}imize", replace=True
)
