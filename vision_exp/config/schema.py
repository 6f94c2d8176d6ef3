"""Structured-config schemas: the types every YAML file under ``conf/`` is merged into.

They are stored in Hydra's ConfigStore under ``schema/...`` so that a typo'd key or a value of the
wrong type fails at composition time, before any data is loaded or any MLflow run is opened, while
the YAML files stay the single place where defaults are chosen.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class AugmentConfig:
    crop_padding: int = 0
    hflip: bool = False


@dataclass
class DatasetConfig:
    name: str = MISSING
    # ``_target_`` plus arguments of a function returning ``vision_exp.data.sources.ImageSplits``.
    source: Any = MISSING
    mean: list[float] = MISSING
    std: list[float] = MISSING
    val_fraction: float = 0.1
    # Keep only this many training images (before the validation split): for debugging and tests.
    subset: int | None = None
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    # On-disk datasets only (torchvision's CIFAR and FashionMNIST loaders).
    root: str | None = None
    download: bool = False
    verify_checksums: bool = True


@dataclass
class SimpleCNNConfig:
    _target_: str = "vision_exp.models.simple_cnn.SimpleCNN"
    width: int = 32
    dropout: float = 0.1


@dataclass
class ResNetConfig:
    _target_: str = "vision_exp.models.resnet.resnet"
    depth: int = 18
    # "cifar": 3x3 stride-1 stem, no max-pool (small images); "imagenet": torchvision's 7x7 stem.
    stem: str = "cifar"
    zero_init_residual: bool = False


@dataclass
class SpeedNetConfig:
    _target_: str = "vision_exp.models.speednet.SpeedNet"
    # The stem's width, then one conv group (halving the resolution) per further width.
    widths: list[int] = field(default_factory=lambda: [32, 64, 256, 256])
    residual: bool = True
    head_scale: float = 0.125


@dataclass
class SGDConfig:
    _target_: str = "torch.optim.SGD"
    _partial_: bool = True
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4


@dataclass
class AdamConfig:
    _target_: str = "torch.optim.Adam"
    _partial_: bool = True
    lr: float = 1e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    weight_decay: float = 0.0


@dataclass
class AdamWConfig(AdamConfig):
    _target_: str = "torch.optim.AdamW"
    weight_decay: float = 0.05


@dataclass
class ConstantSchedulerConfig:
    _target_: str = "vision_exp.optim.schedulers.constant"
    _partial_: bool = True


@dataclass
class CosineSchedulerConfig:
    _target_: str = "vision_exp.optim.schedulers.cosine"
    _partial_: bool = True
    warmup_epochs: float = 0.0
    min_lr_ratio: float = 0.0


@dataclass
class OneCycleSchedulerConfig:
    _target_: str = "vision_exp.optim.schedulers.onecycle"
    _partial_: bool = True
    pct_start: float = 0.25
    div_factor: float = 25.0
    final_div_factor: float = 1e4


@dataclass
class LinearSchedulerConfig:
    _target_: str = "vision_exp.optim.schedulers.linear"
    _partial_: bool = True
    pct_start: float = 0.25
    start_ratio: float = 0.1
    end_ratio: float = 0.0


@dataclass
class StepSchedulerConfig:
    _target_: str = "vision_exp.optim.schedulers.step"
    _partial_: bool = True
    step_epochs: int = 30
    gamma: float = 0.1


@dataclass
class PlateauSchedulerConfig:
    _target_: str = "vision_exp.optim.schedulers.plateau"
    _partial_: bool = True
    factor: float = 0.1
    patience: int = 5
    mode: str = "max"


@dataclass
class EarlyStoppingConfig:
    # Epochs without improvement of ``optimized_metric`` before stopping; null disables it.
    patience: int | None = None
    min_delta: float = 0.0


@dataclass
class TrainerConfig:
    max_epochs: int = 10
    batch_size: int = 128
    eval_batch_size: int = 512
    device: str = "auto"
    precision: str = "32"
    grad_accum_steps: int = 1
    grad_clip_norm: float | None = None
    label_smoothing: float = 0.0
    # true: skip batches whose loss is NaN/inf instead of stopping the run.
    skip_nonfinite_loss: bool = False
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    deterministic: bool = False
    num_threads: int | None = None
    limit_train_batches: int | None = None
    limit_eval_batches: int | None = None
    progress_bar: bool = True
    save_checkpoints: bool = True
    # Speed switches (vision_exp.engine.acceleration): null = on for CUDA, off elsewhere.
    channels_last: bool | None = None
    compile: bool | None = None
    compile_mode: str = "default"
    compile_backend: str = "inductor"
    cudnn_benchmark: bool | None = None
    fused_optimizer: bool | None = None
    data_on_device: bool | None = None
    cpu_autocast: bool = False
    # Evaluate on the mean logits of each image and its mirror image.
    tta_hflip: bool = False


@dataclass
class MLflowConfig:
    # null: $MLFLOW_TRACKING_URI if set, else sqlite:///mlflow.db in the working directory.
    tracking_uri: str | None = None
    experiment_name: str = "vision_exp"
    run_name: str | None = None
    log_model: bool = True
    tags: dict[str, str] = field(default_factory=dict)
    # Send metrics at most this often (seconds); buffered ones are sent when the run ends.
    flush_interval_s: float = 2.0


@dataclass
class DistributedConfig:
    enabled: bool = False


@dataclass
class DDPConfig(DistributedConfig):
    enabled: bool = True
    # auto: nccl when the ranks use CUDA, gloo on CPUs; or nccl / gloo.
    backend: str = "auto"
    # global: trainer.batch_size is one optimizer step's batch summed over ranks; per_rank: each
    # rank's (the step's batch grows with the number of processes).
    batch_size_scope: str = "global"
    # linear: optimizer.lr times (global batch / trainer.batch_size); none: lr as given.
    lr_scaling: str = "none"
    # BatchNorm statistics over the global batch instead of each rank's (CUDA only).
    sync_batchnorm: bool = False
    # How long a collective waits for the other ranks before the job fails.
    timeout_s: float = 600.0


@dataclass
class RegistryConfig:
    enabled: bool = False


@dataclass
class ChampionChallengerConfig(RegistryConfig):
    _target_: str = "vision_exp.registry.policy.ChampionChallenger"
    enabled: bool = True
    model_name: str = "vision-classifier"
    # A test-report metric where higher is better: test_acc or test_macro_f1.
    metric: str = "test_acc"
    # The absolute bar: below it a model is registered but never promoted.
    min_metric: float = 0.0
    # The alias a model that clears the bar and beats `champion` is given.
    alias: str = "staging"
    champion: str = "production"


@dataclass
class TuningConfig:
    """Set by the Optuna sweeper on each trial's job (null otherwise): how it finds its trial."""

    study_name: str | None = None
    trial_number: int | None = None
    # The sweep's MLflow run: each trial's run is nested under it.
    parent_run_id: str | None = None


@dataclass
class OptunaSweeperConfig:
    """``hydra/sweeper=optuna``: upstream's options plus ``pruner``; see conf/hydra/sweeper."""

    _target_: str = "vision_exp.tuning.sweeper.OptunaPruningSweeper"
    sampler: Any = MISSING
    pruner: Any = MISSING
    # maximize or minimize; by default what ``optimized_metric`` calls for.
    direction: str = MISSING
    # Any Optuna storage URL; trials' jobs report to the study through it, so it cannot be null.
    storage: str = MISSING
    study_name: str = MISSING
    # Trials the study should hold when the sweep ends (COMPLETE, PRUNED, FAIL and RUNNING count).
    n_trials: int = 20
    # Trials asked and launched per batch; null: as many as the launcher runs at once.
    n_jobs: int | None = None
    # Share of this sweep's trials that may fail (PRUNED is not a failure) before it stops.
    max_failure_rate: float = 0.25
    params: dict[str, str] | None = None
    custom_search_space: str | None = None


@dataclass
class MedianPrunerConfig:
    _target_: str = "optuna.pruners.MedianPruner"
    n_startup_trials: int = 5
    n_warmup_steps: int = 0
    interval_steps: int = 1
    n_min_trials: int = 1


@dataclass
class HyperbandPrunerConfig:
    _target_: str = "optuna.pruners.HyperbandPruner"
    min_resource: int = 1
    max_resource: Any = "auto"
    reduction_factor: int = 3


@dataclass
class SuccessiveHalvingPrunerConfig:
    _target_: str = "optuna.pruners.SuccessiveHalvingPruner"
    min_resource: Any = "auto"
    reduction_factor: int = 4
    min_early_stopping_rate: int = 0


@dataclass
class ThresholdPrunerConfig:
    _target_: str = "optuna.pruners.ThresholdPruner"
    lower: float | None = None
    upper: float | None = None
    n_warmup_steps: int = 0
    interval_steps: int = 1


@dataclass
class NopPrunerConfig:
    _target_: str = "optuna.pruners.NopPruner"


@dataclass
class TrainConfig:
    dataset: DatasetConfig = MISSING
    model: Any = MISSING
    optimizer: Any = MISSING
    scheduler: Any = MISSING
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    mlflow: MLflowConfig = field(default_factory=MLflowConfig)
    distributed: Any = MISSING
    registry: Any = MISSING
    seed: int = 42
    optimized_metric: str = "val_acc"
    # An output folder or checkpoint file to continue from its last completed epoch.
    resume: str | None = None
    tuning: TuningConfig = field(default_factory=TuningConfig)


SCHEMAS: dict[str, dict[str, type]] = {
    "schema/dataset": {"base": DatasetConfig},
    "schema/model": {
        "simple_cnn": SimpleCNNConfig,
        "resnet": ResNetConfig,
        "speednet": SpeedNetConfig,
    },
    "schema/optimizer": {"sgd": SGDConfig, "adam": AdamConfig, "adamw": AdamWConfig},
    "schema/scheduler": {
        "none": ConstantSchedulerConfig,
        "cosine": CosineSchedulerConfig,
        "onecycle": OneCycleSchedulerConfig,
        "linear": LinearSchedulerConfig,
        "step": StepSchedulerConfig,
        "plateau": PlateauSchedulerConfig,
    },
    "schema/trainer": {"base": TrainerConfig},
    "schema/mlflow": {"base": MLflowConfig},
    "schema/distributed": {"none": DistributedConfig, "ddp": DDPConfig},
    "schema/registry": {"none": RegistryConfig, "champion_challenger": ChampionChallengerConfig},
    "schema/sweeper": {"optuna": OptunaSweeperConfig},
    "schema/pruner": {
        "median": MedianPrunerConfig,
        "hyperband": HyperbandPrunerConfig,
        "successive_halving": SuccessiveHalvingPrunerConfig,
        "threshold": ThresholdPrunerConfig,
        "none": NopPrunerConfig,
    },
}


def register_schemas() -> None:
    """Store every schema; idempotent, so importing twice (tests, sweeps) is harmless."""
    store = ConfigStore.instance()
    store.store(group="schema", name="train", node=TrainConfig)
    for group, nodes in SCHEMAS.items():
        for name, node in nodes.items():
            store.store(group=group, name=name, node=node)
