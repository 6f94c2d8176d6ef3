"""Checks a type cannot express, run on the composed config before any work starts.

Types, option names and typo'd keys are caught by Hydra against the schemas; what is left are
ranges, choices and keys forced in with ``+``. Every problem is reported at once, in one paragraph.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

from omegaconf import DictConfig, OmegaConf

from vision_exp.engine.acceleration import COMPILE_BACKENDS, COMPILE_MODES
from vision_exp.engine.runtime import PRECISIONS
from vision_exp.errors import ConfigError
from vision_exp.models.resnet import BUILDERS as RESNET_DEPTHS
from vision_exp.models.resnet import STEMS
from vision_exp.registry.names import (
    ALIAS_RULE,
    MODEL_NAME_RULE,
    is_valid_alias,
    is_valid_model_name,
)

_ABSENT = object()
MONITORED_METRICS = ("val_acc", "val_loss")
# Test-report metrics where higher is better, so "clears min_metric" and "beats" read one way.
REGISTRY_METRICS = ("test_acc", "test_macro_f1")


def _positive(v: Any) -> bool:
    return isinstance(v, (int, float)) and v > 0


def _non_negative(v: Any) -> bool:
    return isinstance(v, (int, float)) and v >= 0


def _at_least_one(v: Any) -> bool:
    return isinstance(v, int) and v >= 1


def _optional(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: v is None or check(v)


def _one_of(*choices: Any) -> Callable[[Any], bool]:
    return lambda v: v in choices


def _open_unit(v: Any) -> bool:
    return isinstance(v, (int, float)) and 0 < v < 1


def _half_open_unit(v: Any) -> bool:
    return isinstance(v, (int, float)) and 0 <= v < 1


def _widths(v: Any) -> bool:
    return len(v) >= 2 and all(isinstance(w, int) and w >= 1 for w in v)


def _unit(v: Any) -> bool:
    return isinstance(v, (int, float)) and 0 <= v <= 1


# (key, check, what is allowed). Keys absent from the composed config (model.depth on a simple_cnn)
# are skipped.
RULES: list[tuple[str, Callable[[Any], bool], str]] = [
    ("seed", _non_negative, "an integer >= 0"),
    ("optimized_metric", _one_of(*MONITORED_METRICS), f"one of {', '.join(MONITORED_METRICS)}"),
    ("optimizer.lr", _positive, "a number > 0"),
    ("optimizer.weight_decay", _non_negative, "a number >= 0"),
    ("optimizer.momentum", _half_open_unit, "a number in [0, 1)"),
    ("trainer.max_epochs", _at_least_one, "an integer >= 1"),
    ("trainer.batch_size", _at_least_one, "an integer >= 1"),
    ("trainer.eval_batch_size", _at_least_one, "an integer >= 1"),
    ("trainer.grad_accum_steps", _at_least_one, "an integer >= 1"),
    ("trainer.grad_clip_norm", _optional(_positive), "null or a number > 0"),
    ("trainer.label_smoothing", _half_open_unit, "a number in [0, 1)"),
    ("trainer.precision", _one_of(*PRECISIONS), f"one of {', '.join(PRECISIONS)}"),
    ("trainer.num_threads", _optional(_at_least_one), "null or an integer >= 1"),
    ("trainer.limit_train_batches", _optional(_at_least_one), "null or an integer >= 1"),
    ("trainer.limit_eval_batches", _optional(_at_least_one), "null or an integer >= 1"),
    ("trainer.compile_mode", _one_of(*COMPILE_MODES), f"one of {', '.join(COMPILE_MODES)}"),
    (
        "trainer.compile_backend",
        _one_of(*COMPILE_BACKENDS),
        f"one of {', '.join(COMPILE_BACKENDS)}",
    ),
    ("trainer.early_stopping.patience", _optional(_at_least_one), "null or an integer >= 1"),
    ("trainer.early_stopping.min_delta", _non_negative, "a number >= 0"),
    ("mlflow.flush_interval_s", _non_negative, "a number >= 0 (0: send every epoch)"),
    ("dataset.val_fraction", _open_unit, "a number strictly between 0 and 1"),
    (
        "dataset.subset",
        _optional(lambda v: isinstance(v, int) and v >= 2),
        "null or an integer >= 2",
    ),
    ("dataset.augment.crop_padding", _non_negative, "an integer >= 0"),
    ("model.depth", _one_of(*RESNET_DEPTHS), f"one of {', '.join(map(str, RESNET_DEPTHS))}"),
    ("model.stem", _one_of(*STEMS), f"one of {', '.join(STEMS)}"),
    ("model.dropout", _half_open_unit, "a number in [0, 1)"),
    ("model.widths", _widths, "a list of at least 2 integers >= 1"),
    ("model.head_scale", _positive, "a number > 0"),
    ("scheduler.warmup_epochs", _non_negative, "a number >= 0"),
    ("scheduler.pct_start", _open_unit, "a number strictly between 0 and 1"),
    ("distributed.backend", _one_of("auto", "nccl", "gloo"), "one of auto, nccl, gloo"),
    ("distributed.batch_size_scope", _one_of("global", "per_rank"), "one of global, per_rank"),
    ("distributed.lr_scaling", _one_of("none", "linear"), "one of none, linear"),
    ("distributed.timeout_s", _positive, "a number > 0"),
    ("scheduler.start_ratio", _non_negative, "a number >= 0"),
    ("scheduler.end_ratio", _non_negative, "a number >= 0"),
    ("registry.model_name", is_valid_model_name, MODEL_NAME_RULE),
    ("registry.metric", _one_of(*REGISTRY_METRICS), f"one of {', '.join(REGISTRY_METRICS)}"),
    ("registry.min_metric", _unit, "a number in [0, 1]"),
    ("registry.alias", is_valid_alias, ALIAS_RULE),
    ("registry.champion", is_valid_alias, ALIAS_RULE),
]


def _unknown_keys(node: DictConfig, prefix: str = "") -> Iterator[str]:
    """Keys forced in with ``+key=value`` that no schema declares (so nothing would read them)."""
    node_type = OmegaConf.get_type(node)
    declared = (
        {f.name for f in dataclasses.fields(node_type)}
        if node_type is not None and dataclasses.is_dataclass(node_type)
        else None
    )
    for key in node:
        name = str(key)
        if declared is not None and name not in declared and not name.startswith("_"):
            yield f"{prefix}{name}"
        child = node._get_node(name)
        if isinstance(child, DictConfig) and not child._is_missing() and not child._is_none():
            yield from _unknown_keys(child, f"{prefix}{name}.")


def validate_config(cfg: DictConfig) -> None:
    problems = []
    for key, check, allowed in RULES:
        value = OmegaConf.select(cfg, key, default=_ABSENT)
        if value is not _ABSENT and not check(value):
            problems.append(f"{key}={value!r} is not allowed (expected {allowed})")
    if OmegaConf.select(cfg, "registry.enabled", default=False) and not cfg.mlflow.log_model:
        problems.append(
            "registry.enabled=true needs mlflow.log_model=true (the registry registers the "
            "logged model; debug=fast turns logging off)"
        )
    problems.extend(
        f"{key} is not a known setting (check its spelling; `--cfg job` prints the whole config)"
        for key in _unknown_keys(cfg)
    )
    if problems:
        raise ConfigError("Invalid configuration: " + "; ".join(problems) + ".")
