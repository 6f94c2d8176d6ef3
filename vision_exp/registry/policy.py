"""What happens to a trained model after its run: the ``registry`` config group's policies.

``registry=champion_challenger`` registers every model and promotes it only when it clears an
absolute bar *and* beats the current champion on the same test images; anything else (a champion
tested on other images, a metric below the bar) keeps the challenger registered but unpromoted, with
the reason written on the version and the run.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from omegaconf import DictConfig, OmegaConf

from vision_exp.config.targets import build
from vision_exp.data.datamodule import Split
from vision_exp.errors import RegistryError
from vision_exp.registry.model_registry import ModelRegistry
from vision_exp.registry.names import check_alias, check_model_name

log = logging.getLogger(__name__)

TEST_SPLIT_TAG = "test_split"
DECISION_TAG = "registry.decision"
REASON_TAG = "registry.reason"


def split_digest(split: Split) -> str:
    """Identifies a test split by content, so "the same test split" is checked, not assumed."""
    digest = hashlib.sha256()
    digest.update(split.images.contiguous().cpu().numpy().tobytes())
    digest.update(split.labels.contiguous().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class Decision:
    model: str
    version: str
    promoted: bool
    reason: str


class RegistryPolicy(Protocol):
    def __call__(
        self, run_id: str, model_uri: str, metrics: Mapping[str, float], test_split: str
    ) -> Decision: ...


class ChampionChallenger:
    """Register as ``model_name``; promote to ``alias`` when ``metric`` >= ``min_metric`` and it
    is strictly better than the holder of ``champion`` on the same test split."""

    def __init__(
        self,
        model_name: str,
        metric: str,
        min_metric: float,
        alias: str,
        champion: str,
        tracking_uri: str | None = None,
    ) -> None:
        self.model_name = check_model_name(model_name)
        self.metric = metric
        self.min_metric = min_metric
        self.alias = check_alias(alias)
        self.champion = check_alias(champion)
        self.registry = ModelRegistry(tracking_uri)

    def __call__(
        self, run_id: str, model_uri: str, metrics: Mapping[str, float], test_split: str
    ) -> Decision:
        if self.metric not in metrics:
            raise RegistryError(
                f"registry.metric={self.metric!r} was not measured (the run logged "
                f"{', '.join(sorted(metrics))})."
            )
        value = metrics[self.metric]
        version = self.registry.register(
            self.model_name, run_id, model_uri, tags={TEST_SPLIT_TAG: test_split}
        )
        number = str(version.version)
        promote, reason = self._judge(value, test_split)
        if promote:
            self.registry.promote(self.model_name, number, self.alias, reason)
        decision = Decision(self.model_name, number, promote, reason)
        self._record(decision, run_id)
        return decision

    def _judge(self, value: float, test_split: str) -> tuple[bool, str]:
        name = f"{self.metric} {value:.4f}"
        if value < self.min_metric:
            return False, f"{name} is below registry.min_metric={self.min_metric:.4f}"
        champion = self.registry.holder(self.model_name, self.champion)
        if champion is None:
            return True, f"{name} clears {self.min_metric:.4f}; no @{self.champion} to beat yet"
        label = f"@{self.champion} v{champion.version}"
        if champion.tags.get(TEST_SPLIT_TAG) != test_split:
            return False, (
                f"{label} was tested on a different test split, so the scores do not compare; "
                "compare by hand and promote with `python -m vision_exp.registry promote`"
            )
        best = self.registry.summary(champion).metric(self.metric)
        if best is None:
            return False, f"{label} has no {self.metric} to compare with"
        if value > best:
            return True, f"{name} beats {label} ({best:.4f}) on the same test split"
        return False, f"{name} does not beat {label} ({best:.4f}) on the same test split"

    def _record(self, decision: Decision, run_id: str) -> None:
        verdict = f"promoted to @{self.alias}" if decision.promoted else "not promoted"
        client = self.registry.client
        client.set_model_version_tag(decision.model, decision.version, DECISION_TAG, verdict)
        client.set_model_version_tag(decision.model, decision.version, REASON_TAG, decision.reason)
        client.set_tag(run_id, "registry.model", f"{decision.model}/{decision.version}")
        client.set_tag(run_id, DECISION_TAG, verdict)
        client.set_tag(run_id, REASON_TAG, decision.reason)
        log.info(
            "Registered %s v%s, %s: %s", decision.model, decision.version, verdict, decision.reason
        )


def build_policy(registry_cfg: DictConfig, tracking_uri: str) -> RegistryPolicy | None:
    """The option's ``_target_`` built from its keys, or None when the group is off (``enabled``
    is the group's switch, not a policy setting, so it is not passed on)."""
    if not registry_cfg.enabled:
        return None
    settings = OmegaConf.masked_copy(registry_cfg, [str(k) for k in registry_cfg if k != "enabled"])
    policy: RegistryPolicy = build(settings, tracking_uri=tracking_uri)
    return policy


def apply_registry_policy(
    registry_cfg: DictConfig,
    tracking_uri: str,
    run_id: str,
    model_uri: str,
    metrics: Mapping[str, float],
    test_split: Split,
) -> Decision | None:
    policy = build_policy(registry_cfg, tracking_uri)
    if policy is None:
        return None
    return policy(run_id, model_uri, metrics, split_digest(test_split))
