from __future__ import annotations

import mlflow
import pytest
import torch

from tests.registry.conftest import EXAMPLE, add_version, log_run, tiny_model
from vision_exp.errors import RegistryError
from vision_exp.registry import ModelRegistry
from vision_exp.registry.lock import lock_name, registry_lock
from vision_exp.registry.model_registry import best_of, lifecycle_tag

NAME = "vision-classifier"


def state(registry: ModelRegistry, version: str, alias: str) -> dict[str, str]:
    tags = registry.client.get_model_version(NAME, version).tags
    prefix = lifecycle_tag(alias, "")
    return {key[len(prefix) :]: value for key, value in tags.items() if key.startswith(prefix)}


def test_register_describes_the_run_and_keeps_its_model(registry: ModelRegistry) -> None:
    run_id, uri = log_run({"test_acc": 0.875, "test_loss": 0.3}, seed=1)
    version = registry.register(NAME, run_id, uri, tags={"test_split": "abc"})
    assert str(version.version) == "1"
    assert version.run_id == run_id
    assert version.source == uri
    assert version.tags["test_split"] == "abc"
    assert "linear trained on digits" in version.description
    assert "test_acc=0.8750" in version.description
    # Without a model URI the run's logged model is found.
    assert registry.register(NAME, run_id).source == uri


def test_register_refuses_runs_without_a_model(registry: ModelRegistry) -> None:
    mlflow.set_experiment("reg")
    with mlflow.start_run() as run:
        mlflow.log_metric("test_acc", 0.5)
    with pytest.raises(RegistryError, match=r"logged no model .*mlflow\.log_model=true"):
        registry.register(NAME, run.info.run_id)
    with pytest.raises(RegistryError, match="Cannot register run 'nope'"):
        registry.register(NAME, "nope")
    with pytest.raises(RegistryError, match="not a logged model URI"):
        registry.register(NAME, run.info.run_id, "runs:/x/model")


def test_promotion_archives_the_holder_and_rollback_walks_back(registry: ModelRegistry) -> None:
    versions = [add_version(registry, NAME, acc, seed) for seed, acc in enumerate((0.8, 0.9, 0.95))]
    assert registry.holder(NAME, "production") is None

    first = registry.promote(NAME, versions[0], "production", "first")
    assert (first.version, first.previous) == ("1", None)
    registry.promote(NAME, "v2", "production")
    third = registry.promote(NAME, "3", "production", "best so far")
    assert third.describe() == f"{NAME}@production -> v3 (was v2)"
    assert str(registry.version(NAME, "@production").version) == "3"
    assert state(registry, "1", "production")["state"] == "archived"
    assert state(registry, "2", "production") | {"since": ""} == {
        "state": "archived",
        "previous": "1",
        "since": "",
        "reason": "replaced by v3",
    }
    assert state(registry, "3", "production")["reason"] == "best so far"
    # Promoting the holder again changes nothing.
    assert registry.promote(NAME, "3", "production").previous == "3"

    assert registry.rollback(NAME, "production").version == "2"
    assert state(registry, "3", "production")["state"] == "rolled_back"
    assert state(registry, "2", "production")["state"] == "active"
    assert registry.rollback(NAME, "production").version == "1"
    with pytest.raises(RegistryError, match=r"first version to hold .* pass --to VERSION"):
        registry.rollback(NAME, "production")
    assert registry.rollback(NAME, "production", to="3").previous == "1"
    assert str(registry.holder(NAME, "production").version) == "3"  # type: ignore[union-attr]

    # Another role keeps its own history.
    registry.promote(NAME, "1", "staging")
    assert "previous" not in state(registry, "1", "staging")
    assert str(registry.holder(NAME, "production").version) == "3"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda r: r.promote(NAME, "1", "latest"), "Alias 'latest' is reserved by MLflow"),
        (lambda r: r.promote(NAME, "1", "v3"), "Alias 'v3' is reserved by MLflow"),
        (lambda r: r.promote(NAME, "1", "prod uction"), "not a valid alias"),
        (lambda r: r.promote(NAME, "9", "production"), r"has no version 9 \(versions: v1\)"),
        (lambda r: r.promote(NAME, "one", "production"), "'one' is not a version number"),
        (lambda r: r.promote("missing", "1", "production"), r"No registered model .*'missing'"),
        (lambda r: r.rollback(NAME, "production"), "holds @production; nothing to roll back"),
        (lambda r: r.version(NAME, "@staging"), "No version of 'vision-classifier' holds"),
        (lambda r: r.versions("a/b"), "Model name 'a/b' is not valid"),
        (lambda r: r.compare(NAME, []), "at least one version"),
    ],
)
def test_bad_input_is_named_in_one_sentence(
    registry: ModelRegistry, call: object, message: str
) -> None:
    add_version(registry, NAME, 0.5)
    with pytest.raises(RegistryError, match=message):
        call(registry)  # type: ignore[operator]
    assert registry.holder(NAME, "production") is None


def test_compare_reads_metrics_from_the_runs(registry: ModelRegistry) -> None:
    add_version(registry, NAME, 0.9)
    add_version(registry, NAME, 0.7, seed=1)
    registry.promote(NAME, "2", "production")
    summaries = registry.compare(NAME, ["1", "@production"])
    assert [s.metric("test_acc") for s in summaries] == [0.9, 0.7]
    assert [s.dataset for s in summaries] == ["digits", "digits"]
    assert best_of(summaries, "test_acc") is summaries[0]
    assert best_of(summaries, "test_loss") is summaries[0]  # lower loss wins
    assert best_of(summaries, "not_logged") is None


def test_models_list_hides_locks(registry: ModelRegistry) -> None:
    add_version(registry, NAME, 0.5)
    with registry_lock(registry.client, NAME, "production"):
        assert [m.name for m in registry.models()] == [NAME]
        assert registry.client.get_registered_model(lock_name(NAME, "production"))
    assert [m.name for m in registry.client.search_registered_models()] == [NAME]


def test_lock_waits_then_fails_clearly_and_breaks_stale_locks(registry: ModelRegistry) -> None:
    with (
        registry_lock(registry.client, NAME, "production"),
        pytest.raises(RegistryError, match=r"Another promotion of .*@production is in progress"),
        registry_lock(registry.client, NAME, "production", timeout=0.3),
    ):
        pass
    # A lock left behind by a crashed process is broken once it is older than stale_after.
    registry.client.create_registered_model(
        lock_name(NAME, "staging"), tags={"vision_exp.lock_owner": "crashed:1"}
    )
    with registry_lock(registry.client, NAME, "staging", timeout=5, stale_after=0):
        held = registry.client.get_registered_model(lock_name(NAME, "staging"))
        assert held.tags["vision_exp.lock_owner"] != "crashed:1"
    assert [m.name for m in registry.client.search_registered_models()] == []


def test_alias_loads_with_mlflow_pytorch_and_predicts(registry: ModelRegistry) -> None:
    add_version(registry, NAME, 0.5, seed=3)
    registry.promote(NAME, "1", "production")
    loaded = mlflow.pytorch.load_model(f"models:/{NAME}@production")
    with torch.no_grad():
        assert torch.allclose(loaded(EXAMPLE), tiny_model(3)(EXAMPLE))
