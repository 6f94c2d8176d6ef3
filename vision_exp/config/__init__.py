"""Config schemas, resolvers and validation; importing this package registers the schemas."""

from omegaconf import OmegaConf

from vision_exp.config.schema import register_schemas
from vision_exp.engine.early_stopping import metric_mode

register_schemas()
# `${metric_mode:${optimized_metric}}`: min for losses, max otherwise (the plateau schedule).
OmegaConf.register_resolver("metric_mode", metric_mode, replace=True)
