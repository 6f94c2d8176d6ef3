"""The config a run actually used, saved beside Hydra's and read back for a replay.

Hydra saves ``.hydra/config.yaml`` unresolved: ``${now:...}`` or ``${oc.env:...}`` would resolve
differently at replay time. Each run therefore also saves ``.hydra/resolved.yaml``, with
credentials redacted (it is uploaded to MLflow with the rest of ``.hydra``). Reading it back, a
redacted value is taken from the unresolved file when that holds it, and otherwise must be given
again; a redacted tracking URI falls back to ``$MLFLOW_TRACKING_URI`` or the local store.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from vision_exp.config.schema import SCHEMAS, TrainConfig
from vision_exp.errors import ConfigError
from vision_exp.tracking.redact import REDACTED, redact_value

log = logging.getLogger(__name__)

RESOLVED = "resolved.yaml"
UNRESOLVED = "config.yaml"
HYDRA = "hydra.yaml"
TRACKING_URI_KEY = "mlflow.tracking_uri"
# Settings of a run's ``hydra:`` node that shape the job itself and are replayed with it; the rest
# (output folder, sweeper, launcher, runtime facts) belongs to the new invocation.
REPLAYED_HYDRA_KEYS = ("job.env_set", "job.env_copy", "job.chdir", "job_logging", "hydra_logging")


def _redacted_tree(tree: Any, key: str = "") -> Any:
    if isinstance(tree, Mapping):
        return {k: _redacted_tree(v, str(k)) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_redacted_tree(v, key) for v in tree]
    return redact_value(key, tree)


def save_resolved(cfg: DictConfig, hydra_dir: Path) -> None:
    """Write the resolved, redacted config beside Hydra's own (a no-op outside a Hydra job)."""
    if hydra_dir.is_dir():
        resolved = _redacted_tree(OmegaConf.to_container(cfg, resolve=True))
        (hydra_dir / RESOLVED).write_text(OmegaConf.to_yaml(resolved), encoding="utf-8")


def _leaves(tree: Any, prefix: str = "") -> Iterable[tuple[str, Any]]:
    if isinstance(tree, Mapping):
        for key, value in tree.items():
            yield from _leaves(value, f"{prefix}{key}.")
    else:
        yield prefix.rstrip("."), tree


def load_saved(hydra_dir: Path, overridden: Iterable[str] = ()) -> dict[str, Any]:
    """The run's config as a plain dict, ready to replay, from a ``.hydra`` folder.

    ``overridden``: keys the user sets again on the command line, so their saved (possibly
    redacted) values do not matter.
    """
    unresolved_path = hydra_dir / UNRESOLVED
    resolved_path = hydra_dir / RESOLVED
    if not unresolved_path.is_file():
        raise ConfigError(
            f"{hydra_dir} holds no {UNRESOLVED}: not the .hydra folder of a vision_exp run."
        )
    unresolved = OmegaConf.to_container(OmegaConf.load(unresolved_path), resolve=False)
    # Runs saved before resolved copies existed replay their unresolved config.
    saved = OmegaConf.load(resolved_path if resolved_path.is_file() else unresolved_path)
    skip = set(overridden)
    for key, value in list(_leaves(OmegaConf.to_container(saved, resolve=False))):
        if not (isinstance(value, str) and REDACTED in value) or key in skip:
            continue
        raw = _raw_value(unresolved, key)
        if isinstance(raw, str) and REDACTED not in raw:
            OmegaConf.update(saved, key, raw, force_add=True)
        elif key == TRACKING_URI_KEY:
            log.warning(
                "The saved %s is redacted; replaying with $MLFLOW_TRACKING_URI or the local "
                "store (pass %s=... to choose).",
                key,
                key,
            )
            OmegaConf.update(saved, key, None)
        else:
            raise ConfigError(
                f"The saved {key} holds a credential, redacted when the run was saved: give it "
                f"again on the command line ({key}=...)."
            )
    config: dict[str, Any] = OmegaConf.to_container(saved, resolve=False)  # type: ignore[assignment]
    return config


def _raw_value(tree: Any, key: str) -> Any:
    """The value at dotted ``key`` of a plain container, ``None`` where there is none."""
    for part in key.split("."):
        if not isinstance(tree, Mapping) or part not in tree:
            return None
        tree = tree[part]
    return tree


def replayed_hydra_settings(hydra_dir: Path) -> dict[str, Any]:
    """The part of the saved ``hydra:`` node a replay keeps (see ``REPLAYED_HYDRA_KEYS``)."""
    path = hydra_dir / HYDRA
    if not path.is_file():
        return {}
    hydra = OmegaConf.to_container(OmegaConf.load(path).hydra, resolve=False)
    kept = OmegaConf.create()
    for key in REPLAYED_HYDRA_KEYS:
        raw = _raw_value(hydra, key)
        if raw is not None:
            OmegaConf.update(kept, key, raw, force_add=True)
    settings: dict[str, Any] = OmegaConf.to_container(kept, resolve=False)  # type: ignore[assignment]
    return settings


def saved_choices(hydra_dir: Path) -> dict[str, str]:
    """Which option of each config group the run composed (``optimizer: adamw``)."""
    path = hydra_dir / HYDRA
    if not path.is_file():
        return {}
    choices = OmegaConf.select(OmegaConf.load(path), "hydra.runtime.choices", default=None)
    if choices is None:
        return {}
    # A replayed run composed ``schema/<group>@<group>`` entries rather than group options.
    return {str(k).rsplit("@", 1)[-1]: str(v) for k, v in choices.items() if v is not None}


def group_schemas(config: Mapping[str, Any], choices: Mapping[str, str]) -> dict[str, str]:
    """The current schema for each config group of a saved config.

    Matched by ``_target_`` first (the schema that builds the same class), then by the option the
    run chose when the schema is named after it, then by being the group's only schema. A group
    none fits (a user's own model, say) stays untyped, as it was composed.
    """
    found: dict[str, str] = {}
    for store_group, options in SCHEMAS.items():
        group = store_group.removeprefix("schema/")
        node = config.get(group)
        if not isinstance(node, Mapping):
            continue
        target = node.get("_target_")
        by_target = [n for n, cls in options.items() if getattr(cls, "_target_", None) == target]
        if target is not None and len(by_target) == 1:
            found[group] = by_target[0]
        elif choices.get(group) in options:
            found[group] = choices[group]
        elif len(options) == 1:
            found[group] = next(iter(options))
    return found


def check_against_schema(
    config: Mapping[str, Any], schemas: Mapping[str, str], origin: str
) -> None:
    """Merge the saved config into today's schemas, as Hydra will, and explain what no longer fits.

    Hydra would fail too, but with a stack of merge errors; this names the key and the way out.
    """
    typed = OmegaConf.structured(TrainConfig)
    for group, name in schemas.items():
        typed[group] = OmegaConf.structured(SCHEMAS[f"schema/{group}"][name])
    try:
        OmegaConf.merge(typed, config)
    except OmegaConfBaseException as error:
        key = getattr(error, "full_key", None) or "?"
        reason = str(error).splitlines()[0]
        raise ConfigError(
            f"The config saved by {origin} does not fit the current schema at {key}: {reason}. "
            f"The setting was removed, renamed or retyped since that run. Drop it with ~{key} "
            f"(or set a valid value with {key}=...) on the replay command line."
        ) from error
