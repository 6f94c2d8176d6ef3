from __future__ import annotations

import pytest
import torch

from tests.conftest import compose_config
from tests.registry.conftest import log_run
from vision_exp.config.validate import validate_config
from vision_exp.data.datamodule import Split
from vision_exp.errors import ConfigError, RegistryError
from vision_exp.registry import ModelRegistry
from vision_exp.registry.policy import ChampionChallenger, build_policy, split_digest

NAME = "vision-classifier"


def challenger(registry: ModelRegistry, min_metric: float = 0.5) -> ChampionChallenger:
    return ChampionChallenger(
        model_name=NAME,
        metric="test_acc",
        min_metric=min_metric,
        alias="staging",
        champion="production",
        tracking_uri=registry.client.tracking_uri,
    )


def submit(policy: ChampionChallenger, test_acc: float, split: str = "split-a", seed: int = 0):  # type: ignore[no-untyped-def]
    metrics = {"test_acc": test_acc, "test_loss": 1 - test_acc}
    run_id, uri = log_run(metrics, seed)
    return policy(run_id, uri, metrics, split), run_id


def test_champion_challenger_decisions(registry: ModelRegistry) -> None:
    policy = challenger(registry)

    low, _ = submit(policy, 0.4)
    assert not low.promoted and "below registry.min_metric=0.5000" in low.reason
    first, run_id = submit(policy, 0.8)
    assert first.promoted and "no @production to beat yet" in first.reason
    assert str(registry.holder(NAME, "staging").version) == first.version  # type: ignore[union-attr]
    # Why is written on the version and on the run.
    version = registry.client.get_model_version(NAME, first.version)
    assert version.tags["registry.decision"] == "promoted to @staging"
    run_tags = registry.client.get_run(run_id).data.tags
    assert run_tags["registry.model"] == f"{NAME}/{first.version}"
    assert run_tags["registry.reason"] == first.reason

    registry.promote(NAME, first.version, "production")
    tie, _ = submit(policy, 0.8, seed=1)
    assert not tie.promoted
    assert f"does not beat @production v{first.version} (0.8000)" in tie.reason
    other_split, _ = submit(policy, 0.99, split="split-b", seed=2)
    assert not other_split.promoted and "different test split" in other_split.reason
    better, _ = submit(policy, 0.9, seed=3)
    assert better.promoted
    assert f"beats @production v{first.version} (0.8000) on the same test split" in better.reason
    assert str(registry.holder(NAME, "staging").version) == better.version  # type: ignore[union-attr]
    assert str(registry.holder(NAME, "production").version) == first.version  # type: ignore[union-attr]
    assert [str(v.version) for v in registry.versions(NAME)] == ["1", "2", "3", "4", "5"]


def test_unmeasured_metric_is_an_error_before_registering(registry: ModelRegistry) -> None:
    policy = challenger(registry)
    run_id, uri = log_run({"test_loss": 0.1})
    with pytest.raises(RegistryError, match=r"registry\.metric='test_acc' was not measured"):
        policy(run_id, uri, {"test_loss": 0.1}, "split-a")
    assert registry.models() == []


def test_split_digest_follows_the_images_and_labels() -> None:
    images = torch.zeros(4, 1, 2, 2, dtype=torch.uint8)
    labels = torch.tensor([0, 1, 0, 1])
    base = split_digest(Split(images, labels))
    assert split_digest(Split(images.clone(), labels.clone())) == base
    assert split_digest(Split(images, labels.flip(0))) != base
    assert split_digest(Split(images + 1, labels)) != base


def test_registry_group_options_build_their_policy(registry: ModelRegistry) -> None:
    uri = registry.client.tracking_uri
    assert build_policy(compose_config("registry=none").registry, uri) is None
    cfg = compose_config("registry=champion_challenger", "registry.min_metric=0.9")
    validate_config(cfg)
    policy = build_policy(cfg.registry, uri)
    assert isinstance(policy, ChampionChallenger)
    assert (policy.model_name, policy.alias, policy.champion) == (NAME, "staging", "production")
    assert policy.min_metric == 0.9


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["registry.alias=latest"], r"registry\.alias='latest' is not allowed"),
        (["registry.champion=v2"], r"registry\.champion='v2' is not allowed"),
        (["registry.metric=test_loss"], "expected one of test_acc, test_macro_f1"),
        (["registry.min_metric=1.5"], r"registry\.min_metric=1\.5 is not allowed"),
        (["registry.model_name=a/b"], r"registry\.model_name='a/b' is not allowed"),
        (["mlflow.log_model=false"], "registry.enabled=true needs mlflow.log_model=true"),
    ],
)
def test_bad_registry_settings_fail_validation(overrides: list[str], message: str) -> None:
    cfg = compose_config("registry=champion_challenger", *overrides)
    with pytest.raises(ConfigError, match=message):
        validate_config(cfg)
