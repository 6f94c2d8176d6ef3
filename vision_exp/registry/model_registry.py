"""The model lifecycle on MLflow's registry: aliases name the roles, tags keep the history.

MLflow's stages (Staging/Production/Archived) are deprecated since 2.9, so a role here is an alias
(``models:/NAME@production``) and everything a rollback needs lives in tags on the versions, under
``lifecycle.<alias>.*``:

- ``state``: ``active`` while the version holds the alias, ``archived`` once a promotion replaced
  it, ``rolled_back`` once a rollback took the alias away from it;
- ``previous``: the version that held the alias just before this one got it, which is where a
  rollback goes, and from there to that version's own ``previous``;
- ``since`` and ``reason``: when and why the state last changed.

No memory outside MLflow is needed, and every change of holder happens under a lock in the store.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion, RegisteredModel
from mlflow.exceptions import MlflowException

from vision_exp.errors import RegistryError
from vision_exp.registry.lock import LOCK_TAG, registry_lock
from vision_exp.registry.names import check_alias, check_model_name, parse_version
from vision_exp.tracking.uri import resolve_tracking_uri

ACTIVE, ARCHIVED, ROLLED_BACK = "active", "archived", "rolled_back"
# The metrics a run's test report logs, in the order tables show them.
REPORT_METRICS = ("test_acc", "test_loss", "test_macro_f1")


def lifecycle_tag(alias: str, name: str) -> str:
    return f"lifecycle.{alias}.{name}"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Promotion:
    """One change of the version holding ``model@alias``."""

    model: str
    alias: str
    version: str
    previous: str | None

    def describe(self) -> str:
        before = f"v{self.previous}" if self.previous else "nothing"
        return f"{self.model}@{self.alias} -> v{self.version} (was {before})"


@dataclass(frozen=True)
class VersionSummary:
    """A version with the run facts the tables show."""

    version: ModelVersion
    metrics: dict[str, float] = field(default_factory=dict)
    dataset: str | None = None
    model: str | None = None

    def metric(self, name: str) -> float | None:
        return self.metrics.get(name)


class ModelRegistry:
    """Register, promote, roll back and compare versions of registered models."""

    def __init__(self, tracking_uri: str | None = None, lock_timeout: float = 60.0) -> None:
        uri = resolve_tracking_uri(tracking_uri)
        self.client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        self.lock_timeout = lock_timeout

    def models(self) -> list[RegisteredModel]:
        found = self.client.search_registered_models(order_by=["name ASC"])
        return [model for model in found if LOCK_TAG not in model.tags]

    def model(self, name: str) -> RegisteredModel:
        check_model_name(name)
        try:
            return self.client.get_registered_model(name)
        except MlflowException as error:
            if error.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
        known = ", ".join(model.name for model in self.models()) or "none yet"
        raise RegistryError(
            f"No registered model named {name!r} (registered models: {known}). Models are "
            "registered by training with registry=champion_challenger."
        ) from None

    def versions(self, name: str) -> list[ModelVersion]:
        self.model(name)
        found = sorted(
            int(v.version) for v in self.client.search_model_versions(f"name = '{name}'")
        )
        # Searching leaves out aliases; fetching each version brings them.
        return [self.client.get_model_version(name, str(number)) for number in found]

    def version(self, name: str, ref: str) -> ModelVersion:
        """``ref`` is a version (``3``, ``v3``) or an alias (``@production``)."""
        if ref.startswith("@"):
            holder = self.holder(name, ref[1:])
            if holder is None:
                raise RegistryError(f"No version of {name!r} holds the alias {ref!r}.")
            return holder
        number = parse_version(ref)
        self.model(name)
        try:
            return self.client.get_model_version(name, number)
        except MlflowException as error:
            if error.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
        existing = ", ".join(f"v{v.version}" for v in self.versions(name)) or "none"
        raise RegistryError(f"{name!r} has no version {number} (versions: {existing}).") from None

    def holder(self, name: str, alias: str) -> ModelVersion | None:
        """The version holding ``name@alias``, or None if no version does."""
        check_alias(alias)
        version = self.model(name).aliases.get(alias)
        return None if version is None else self.client.get_model_version(name, str(version))

    def summary(self, version: ModelVersion) -> VersionSummary:
        if not version.run_id:
            return VersionSummary(version)
        try:
            run = self.client.get_run(version.run_id)
        except MlflowException:
            return VersionSummary(version)
        return VersionSummary(
            version,
            metrics=dict(run.data.metrics),
            dataset=run.data.tags.get("dataset"),
            model=run.data.tags.get("model"),
        )

    def compare(self, name: str, refs: Sequence[str]) -> list[VersionSummary]:
        """The versions (numbers or ``@alias``) with their runs' metrics, in the order given."""
        if not refs:
            raise RegistryError("Name at least one version to compare.")
        return [self.summary(self.version(name, ref)) for ref in refs]

    def register(
        self,
        name: str,
        run_id: str,
        model_uri: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> ModelVersion:
        """Add the run's logged model as a new version, described by its dataset, model and
        test metrics so the registry page reads without opening the run."""
        check_model_name(name)
        try:
            run = self.client.get_run(run_id)
        except MlflowException as error:
            raise RegistryError(f"Cannot register run {run_id!r}: {error.message}") from None
        model_id = self._logged_model_id(run_id, run.info.experiment_id, model_uri)
        try:
            self.client.create_registered_model(name)
        except MlflowException as error:
            if error.error_code not in {"RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"}:
                raise
        metrics = ", ".join(
            f"{key}={run.data.metrics[key]:.4f}"
            for key in REPORT_METRICS
            if key in run.data.metrics
        )
        description = (
            f"{run.data.tags.get('model', 'model')} trained on "
            f"{run.data.tags.get('dataset', 'unknown data')} in run {run_id}"
            + (f": {metrics}" if metrics else "")
        )
        return self.client.create_model_version(
            name,
            source=f"models:/{model_id}",
            run_id=run_id,
            tags=dict(tags or {}),
            description=description,
            model_id=model_id,
        )

    def _logged_model_id(self, run_id: str, experiment_id: str, model_uri: str | None) -> str:
        if model_uri is not None:
            if not model_uri.startswith("models:/m-"):
                raise RegistryError(
                    f"{model_uri!r} is not a logged model URI (expected models:/m-..., as "
                    "returned by mlflow.pytorch.log_model)."
                )
            return model_uri.removeprefix("models:/")
        logged = self.client.search_logged_models(
            experiment_ids=[experiment_id], filter_string=f"source_run_id = '{run_id}'"
        )
        if not logged:
            raise RegistryError(
                f"Run {run_id} logged no model (train with mlflow.log_model=true to register it)."
            )
        return str(max(logged, key=lambda model: model.creation_timestamp).model_id)

    @contextmanager
    def _locked(self, name: str, alias: str) -> Iterator[None]:
        with registry_lock(self.client, name, alias, timeout=self.lock_timeout):
            yield

    def promote(self, name: str, ref: str, alias: str, reason: str = "") -> Promotion:
        """Give ``alias`` to a version; the version that held it is archived and remembered."""
        check_alias(alias)
        with self._locked(name, alias):
            target = self.version(name, ref)
            current = self.holder(name, alias)
            number = str(target.version)
            previous = str(current.version) if current is not None else None
            if previous == number:
                return Promotion(name, alias, number, previous)
            self._hand_over(target, current, alias, ARCHIVED, reason or "promoted")
            if previous is not None:
                self._tag(target, alias, previous=previous)
            elif lifecycle_tag(alias, "previous") in target.tags:
                self.client.delete_model_version_tag(name, number, lifecycle_tag(alias, "previous"))
            return Promotion(name, alias, number, previous)

    def rollback(self, name: str, alias: str, to: str | None = None) -> Promotion:
        """Give ``alias`` back to the version that held it before (or to version ``to``)."""
        check_alias(alias)
        with self._locked(name, alias):
            current = self.holder(name, alias)
            if current is None:
                raise RegistryError(f"No version of {name!r} holds @{alias}; nothing to roll back.")
            if to is not None:
                target = self.version(name, to)
            else:
                previous = current.tags.get(lifecycle_tag(alias, "previous"))
                if not previous:
                    raise RegistryError(
                        f"v{current.version} is the first version to hold {name}@{alias}, so "
                        "there is no earlier holder to roll back to; pass --to VERSION."
                    )
                target = self.version(name, previous)
            number, replaced = str(target.version), str(current.version)
            if number == replaced:
                raise RegistryError(f"v{target.version} already holds {name}@{alias}.")
            if lifecycle_tag(alias, "state") not in target.tags:
                # `--to` a version that never held the alias: it follows the one it replaces.
                self._tag(target, alias, previous=replaced)
            self._hand_over(
                target, current, alias, ROLLED_BACK, f"rollback from v{current.version}"
            )
            return Promotion(name, alias, number, replaced)

    def _hand_over(
        self,
        target: ModelVersion,
        current: ModelVersion | None,
        alias: str,
        old_state: str,
        reason: str,
    ) -> None:
        self.client.set_registered_model_alias(target.name, alias, target.version)
        now = _now()
        self._tag(target, alias, state=ACTIVE, since=now, reason=reason)
        if current is not None:
            self._tag(
                current, alias, state=old_state, since=now, reason=f"replaced by v{target.version}"
            )

    def _tag(self, version: ModelVersion, alias: str, **values: str) -> None:
        for key, value in values.items():
            self.client.set_model_version_tag(
                version.name, str(version.version), lifecycle_tag(alias, key), value
            )


def best_of(summaries: Sequence[VersionSummary], metric: str) -> VersionSummary | None:
    """The summary with the best value of ``metric`` (lowest for losses), ignoring gaps."""
    scored = [
        s for s in summaries if s.metric(metric) is not None and not math.isnan(s.metrics[metric])
    ]
    if not scored:
        return None
    if metric.endswith("loss"):
        return min(scored, key=lambda s: s.metrics[metric])
    return max(scored, key=lambda s: s.metrics[metric])
