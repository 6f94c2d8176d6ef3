"""``python -m vision_exp.registry`` as a user types it, and the lifecycle from training."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import QUICK, run_module
from tests.registry.conftest import add_version
from vision_exp.registry import ModelRegistry

NAME = "vision-classifier"


def registry_cli(workdir: Path, *args: str, check: bool = True) -> str:
    result = run_module("vision_exp.registry", args, workdir, check=check)
    return result.stdout + result.stderr


def test_cli_lists_promotes_compares_and_rolls_back(workdir: Path, registry: ModelRegistry) -> None:
    for seed, acc in enumerate((0.8, 0.9)):
        add_version(registry, NAME, acc, seed)
    registry.promote(NAME, "1", "production")

    out = registry_cli(workdir, "promote", NAME, "2", "production", "--reason", "better on test")
    assert f"{NAME}@production -> v2 (was v1)" in out
    out = registry_cli(workdir, "compare", NAME, "1", "@production")
    assert "best on test_acc: v2" in out
    assert "0.9000" in out and "0.8000" in out
    out = registry_cli(workdir, "rollback", NAME, "production")
    assert f"{NAME}@production -> v1 (was v2)" in out
    assert str(registry.holder(NAME, "production").version) == "1"  # type: ignore[union-attr]

    bad = run_module("vision_exp.registry", ["promote", NAME, "2", "latest"], workdir, check=False)
    assert bad.returncode == 1
    assert "error: Alias 'latest' is reserved by MLflow" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_cli_tables_read_the_store_named_by_tracking_uri(
    workdir: Path, registry: ModelRegistry, tmp_path_factory: pytest.TempPathFactory
) -> None:
    add_version(registry, NAME, 0.75)
    registry.promote(NAME, "1", "staging", "first")
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    uri = f"sqlite:///{workdir / 'mlflow.db'}"

    listed = registry_cli(elsewhere, "--tracking-uri", uri, "list", NAME)
    assert "v1" in listed and "@staging" in listed and "staging: active" in listed
    assert "0.7500" in listed
    shown = registry_cli(elsewhere, "--tracking-uri", uri, "show", NAME, "@staging")
    assert "models:/" in shown and "test_acc" in shown
    # Without the flag the CLI reads $MLFLOW_TRACKING_URI, here a workdir with no models.
    missing = run_module("vision_exp.registry", ["show", NAME], elsewhere, check=False)
    assert missing.returncode == 1
    assert f"No registered model named '{NAME}'" in missing.stderr


@pytest.mark.slow
def test_second_training_is_promoted_only_if_it_beats_the_first(workdir: Path) -> None:
    """The issue's walk-through: train, promote, train a better model, roll back."""
    policy = [*QUICK, "registry=champion_challenger", "mlflow.log_model=true"]
    run_module("vision_exp.train", [*policy, "trainer.max_epochs=2"], workdir)
    registry = ModelRegistry(f"sqlite:///{workdir / 'mlflow.db'}")
    assert str(registry.holder(NAME, "staging").version) == "1"  # type: ignore[union-attr]
    registry_cli(workdir, "promote", NAME, "1", "production")

    # Same images (dataset.subset also trims the test split), more training steps.
    stronger = ["trainer.limit_train_batches=null", "trainer.max_epochs=3"]
    trained = run_module("vision_exp.train", [*policy, *stronger], workdir, timeout=600)
    log = trained.stdout + trained.stderr
    first, second = registry.compare(NAME, ["1", "2"])
    assert second.metrics["test_acc"] > first.metrics["test_acc"]
    assert "promoted to @staging" in log
    assert str(registry.holder(NAME, "staging").version) == "2"  # type: ignore[union-attr]

    # The same weak run again ties with production: registered, not promoted.
    run_module("vision_exp.train", [*policy, "trainer.max_epochs=2"], workdir)
    third = registry.version(NAME, "3")
    assert third.tags["registry.decision"] == "not promoted"
    assert "does not beat @production v1" in third.tags["registry.reason"]

    registry_cli(workdir, "promote", NAME, "2", "production")
    registry_cli(workdir, "rollback", NAME, "production")
    assert str(registry.holder(NAME, "production").version) == "1"  # type: ignore[union-attr]
