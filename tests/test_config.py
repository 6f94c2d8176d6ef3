from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf import OmegaConf

from tests.conftest import compose_config
from vision_exp.config.paths import CONFIG_DIR
from vision_exp.config.validate import validate_config
from vision_exp.errors import ConfigError

GROUPS = (
    "dataset",
    "model",
    "optimizer",
    "scheduler",
    "trainer",
    "mlflow",
    "distributed",
    "registry",
)


def _options(group: str) -> list[str]:
    return sorted(path.stem for path in (CONFIG_DIR / group).glob("*.yaml"))


def test_default_is_the_plans_cifar10_resnet18() -> None:
    cfg = compose_config()
    assert cfg.dataset.name == "cifar10"
    assert cfg.model.depth == 18 and cfg.model.stem == "cifar"
    assert cfg.optimizer._target_ == "torch.optim.SGD"
    assert cfg.dataset.download is True
    assert cfg.optimized_metric == "val_acc"


@pytest.mark.parametrize(
    ("group", "option"),
    [(g, o) for g in GROUPS for o in _options(g)]
    + [("experiment", o) for o in _options("experiment")]
    + [("debug", o) for o in _options("debug")],
)
def test_every_option_composes_and_validates(group: str, option: str) -> None:
    cfg = compose_config(f"{group}={option}")
    OmegaConf.resolve(cfg)
    validate_config(cfg)


def test_schemas_are_not_offered_as_options() -> None:
    assert not (CONFIG_DIR / "schema").exists()
    with pytest.raises(MissingConfigException, match="Available options in 'optimizer'"):
        compose_config("optimizer=base")


def test_plateau_follows_the_monitored_metric() -> None:
    assert compose_config("scheduler=plateau").scheduler.mode == "max"
    assert compose_config("scheduler=plateau", "optimized_metric=val_loss").scheduler.mode == "min"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optimizer.lr=abc", "could not be converted to Float"),
        ("trainer.max_epoch=3", "Did you mean: 'max_epochs'"),
    ],
)
def test_types_and_typos_fail_at_composition(override: str, message: str) -> None:
    with pytest.raises(ConfigCompositionException) as caught:
        compose_config("experiment=digits", override)
    assert message in f"{caught.value} {caught.value.__cause__}"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optimizer.lr=-1", "optimizer.lr=-1.0 is not allowed (expected a number > 0)"),
        ("trainer.max_epochs=0", "trainer.max_epochs=0 is not allowed (expected an integer >= 1)"),
        ("dataset.val_fraction=1.5", "dataset.val_fraction=1.5 is not allowed"),
        ("dataset.val_fraction=0", "strictly between 0 and 1"),
        ("trainer.precision=8", "one of 32, bf16, 16"),
        ("model=resnet18", None),
        ("+model.depth=19", "model.depth is not a known setting"),
        ("optimized_metric=test_acc", "one of val_acc, val_loss"),
        ("+trainer.foo=1", "trainer.foo is not a known setting"),
        ("trainer.grad_clip_norm=0", "null or a number > 0"),
    ],
)
def test_range_checks(override: str, message: str | None) -> None:
    cfg = compose_config("experiment=digits", override)
    if message is None:
        validate_config(cfg)
        return
    with pytest.raises(ConfigError, match=r"^Invalid configuration: ") as caught:
        validate_config(cfg)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_every_problem_is_reported_at_once() -> None:
    cfg = compose_config("experiment=digits", "optimizer.lr=0", "trainer.batch_size=0")
    with pytest.raises(ConfigError) as caught:
        validate_config(cfg)
    assert "optimizer.lr" in str(caught.value) and "trainer.batch_size" in str(caught.value)


def test_model_depth_must_be_a_torchvision_resnet() -> None:
    cfg = compose_config("model=resnet18", "model.depth=19")
    with pytest.raises(ConfigError, match=r"model\.depth=19 .*one of 18, 34, 50, 101, 152"):
        validate_config(cfg)


def test_digits_preset_is_offline_and_small() -> None:
    cfg = compose_config("experiment=digits")
    assert cfg.dataset.name == "digits"
    assert cfg.model._target_.endswith("SimpleCNN")
    assert cfg.dataset.augment.hflip is False


def test_data_root_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("VISION_EXP_DATA_DIR", str(tmp_path))
    cfg = compose_config("dataset=cifar100")
    assert cfg.dataset.source.root == str(tmp_path)
