"""``python -m vision_exp.replay SOURCE [KEY=VALUE ...]``: run again exactly what a past run ran.

SOURCE is a run's Hydra output folder (``outputs/DATE/TIME`` or one job folder of a
``multirun/...`` sweep), an MLflow run id or ``runs:/RUN_ID``. The run's saved, resolved config is
checked against today's schemas and becomes the primary config of a fresh Hydra job, so ``conf/``
edits made since do not leak in; the job gets its own output folder and MLflow run, tagged with
what it replays. Overrides change the saved values (``trainer.max_epochs=3``, ``~some.key``,
``+new.key=1``); ``hydra.*`` overrides go to Hydra (``hydra.run.dir=replays/one``).
"""

from __future__ import annotations

import logging
import re
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import mlflow
import torch
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import HydraException
from mlflow.exceptions import MlflowException
from omegaconf import OmegaConf

import vision_exp.config  # noqa: F401  (registers schemas and resolvers)
from vision_exp.config.saved import (
    check_against_schema,
    group_schemas,
    load_saved,
    replayed_hydra_settings,
    saved_choices,
)
from vision_exp.engine.checkpoint import LAST
from vision_exp.engine.resume import RUN_ID_KEY
from vision_exp.errors import ConfigError, VisionExpError
from vision_exp.tracking.reachability import check_tracking_server
from vision_exp.tracking.redact import redact_text
from vision_exp.tracking.uri import resolve_tracking_uri
from vision_exp.train import run_job

log = logging.getLogger("vision_exp.replay")

PRIMARY_CONFIG = "vision_exp_replay"
_RUN_ID = re.compile(r"^(?:runs:/)?(?P<id>[0-9a-f]{32})/?$")
USAGE = (
    "usage: python -m vision_exp.replay SOURCE [KEY=VALUE ...]\n"
    "  SOURCE: a run's output folder (outputs/DATE/TIME, multirun/DATE/TIME/N),\n"
    "          an MLflow run id or runs:/RUN_ID\n"
    "  KEY=VALUE, ~KEY, +KEY=VALUE: change the replayed config; hydra.KEY=VALUE: Hydra settings"
)


@dataclass
class ReplaySource:
    hydra_dir: Path
    # What the new run's ``replay_of`` tag names: the folder, or runs:/ID.
    label: str
    run_id: str | None


def run_id_in_folder(folder: Path) -> str | None:
    """The MLflow run a folder's checkpoint was logged to; memory-mapped, so large weights are not
    read."""
    path = folder / "checkpoints" / LAST
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:
        return None
    run_id = state.get(RUN_ID_KEY) if isinstance(state, dict) else None
    return str(run_id) if run_id else None


def from_folder(folder: Path) -> ReplaySource:
    hydra_dir = folder / ".hydra"
    if hydra_dir.is_dir():
        return ReplaySource(hydra_dir, str(folder.resolve()), run_id_in_folder(folder))
    jobs = sorted(path.parent for path in folder.glob("*/.hydra"))
    if jobs:
        raise ConfigError(
            f"{folder} is a sweep folder with {len(jobs)} jobs: replay one job folder, such as "
            f"{jobs[0]}."
        )
    raise ConfigError(f"{folder} is not a Hydra output folder: it holds no .hydra/ folder.")


def from_mlflow(run_id: str, tracking_uri: str | None, staging: Path) -> ReplaySource:
    check_tracking_server(tracking_uri)
    uri = resolve_tracking_uri(tracking_uri)
    client = mlflow.MlflowClient(uri)
    try:
        client.get_run(run_id)
    except MlflowException as error:
        raise ConfigError(
            f"There is no MLflow run {run_id} in {redact_text(uri)}: pass the tracking URI it was "
            "logged to (mlflow.tracking_uri=... or $MLFLOW_TRACKING_URI)."
        ) from error
    try:
        local = client.download_artifacts(run_id, "hydra", str(staging))
    except (MlflowException, OSError) as error:
        raise ConfigError(
            f"MLflow run {run_id} has no hydra/ artifacts with its config: only runs logged by "
            "vision_exp.train (or a replay) can be replayed."
        ) from error
    return ReplaySource(Path(local), f"runs:/{run_id}", run_id)


def locate(source: str, tracking_uri: str | None, staging: Path) -> ReplaySource:
    path = Path(source)
    if path.is_dir():
        return from_folder(path)
    match = _RUN_ID.match(source)
    if match:
        return from_mlflow(match["id"], tracking_uri, staging)
    raise ConfigError(
        f"{source!r} is neither a folder nor an MLflow run id (32 hex digits, or runs:/ID)."
    )


def parse_overrides(args: Sequence[str]) -> tuple[list[Override], list[str]]:
    """Split the command line into changes to the saved config and overrides for Hydra."""
    try:
        parsed = OverridesParser.create().parse_overrides(list(args))
    except HydraException as error:
        raise ConfigError(f"Cannot parse the overrides: {error}") from error
    config, hydra_args = [], []
    for override, arg in zip(parsed, args, strict=True):
        if override.key_or_group.startswith(("hydra.", "hydra/")):
            hydra_args.append(arg)
        elif override.is_sweep_override():
            raise ConfigError(f"{arg}: a replay runs one job; sweep with vision_exp.train -m.")
        else:
            config.append(override)
    return config, hydra_args


def apply_overrides(config: dict[str, Any], overrides: Sequence[Override]) -> dict[str, Any]:
    tree = OmegaConf.create(config)
    for override in overrides:
        key = override.key_or_group
        if override.is_delete():
            parent_key, _, leaf = key.rpartition(".")
            parent = OmegaConf.select(tree, parent_key) if parent_key else tree
            if parent is None or leaf not in parent:
                raise ConfigError(f"~{key}: the saved config has no {key} to delete.")
            del parent[leaf]
        else:
            OmegaConf.update(tree, key, override.value(), merge=False, force_add=True)
    result: dict[str, Any] = OmegaConf.to_container(tree, resolve=False)  # type: ignore[assignment]
    return result


def replay_config(source: str, args: Sequence[str], staging: Path) -> dict[str, Any]:
    """The primary config of the replay job: today's schemas, then the saved values."""
    overrides, _ = parse_overrides(args)
    set_uri = next((o.value() for o in overrides if o.key_or_group == "mlflow.tracking_uri"), None)
    found = locate(source, set_uri if isinstance(set_uri, str) else None, staging)
    config = load_saved(found.hydra_dir, overridden=[o.key_or_group for o in overrides])
    # A replay is a fresh run, even of a run that was itself resumed; ``resume=`` may be given.
    config["resume"] = None
    tags = config.setdefault("mlflow", {}).setdefault("tags", {})
    tags["replay_of"] = found.label
    if found.run_id:
        tags["replay_of_run"] = found.run_id
    if args:
        tags["replay_overrides"] = " ".join(args)
    config = apply_overrides(config, overrides)
    schemas = group_schemas(config, saved_choices(found.hydra_dir))
    check_against_schema(config, schemas, source)
    defaults: list[Any] = [{"/schema@_here_": "train"}]
    defaults += [{f"/schema/{group}@{group}": name} for group, name in schemas.items()]
    defaults.append("_self_")
    return {
        "defaults": defaults,
        **config,
        "hydra": replayed_hydra_settings(found.hydra_dir),
    }


def main() -> None:
    args = sys.argv[1:]
    if not args or args[0] in ("-h", "--help"):
        print(USAGE)
        sys.exit(0 if args else 2)
    source, overrides = args[0], args[1:]
    options = [arg for arg in overrides if arg.startswith("-")]
    if options:
        print(f"{USAGE}\nOptions such as {options[0]} are not taken.", file=sys.stderr)
        sys.exit(2)
    logging.basicConfig(format="[%(name)s][%(levelname)s] - %(message)s", level=logging.INFO)
    try:
        with tempfile.TemporaryDirectory() as staging:
            primary = replay_config(source, overrides, Path(staging))
    except VisionExpError as error:
        log.error("%s", error)
        sys.exit(1)
    ConfigStore.instance().store(name=PRIMARY_CONFIG, node=primary)
    _, hydra_args = parse_overrides(overrides)
    log.info("Replaying %s", source)
    sys.argv = [sys.argv[0], *hydra_args]
    hydra.main(config_path=None, config_name=PRIMARY_CONFIG)(run_job)()


if __name__ == "__main__":
    main()
