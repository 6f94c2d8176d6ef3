"""The Optuna sweeper end to end through the CLI on digits, and the pieces below it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import optuna
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from tests.conftest import QUICK, cli_env, mlflow_runs, run_module
from vision_exp.config.paths import CONFIG_DIR
from vision_exp.tracking.mlflow_run import mlflow_run
from vision_exp.tuning.results import FAIL_REASON_ATTR
from vision_exp.tuning.storage import absolute_storage_url
from vision_exp.tuning.sweeper import launcher_width, threads_per_trial
from vision_exp.tuning.tags import STATE_TAG, TRIAL_TAG
from vision_exp.tuning.trial import PRUNER_ATTR, TrialPruned, TrialReporter, open_trial

SWEEP = ("-m", "hydra/sweeper=optuna", *QUICK)
# Prunes every trial after its first epoch: val_acc is never above 1.1.
PRUNE_ALL = ("hydra/sweeper/pruner=threshold", "hydra.sweeper.pruner.lower=1.1")


def load_study(workdir: Path, name: str = "digits") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{workdir / 'optuna.db'}")


def trial_runs(workdir: Path) -> dict[int, mlflow.entities.Run]:
    return {
        int(run.data.tags[TRIAL_TAG]): run
        for run in mlflow_runs(workdir)
        if TRIAL_TAG in run.data.tags
    }


def sweep_runs(workdir: Path) -> list[mlflow.entities.Run]:
    return [
        run
        for run in mlflow_runs(workdir)
        if TRIAL_TAG not in run.data.tags and "optuna.study" in run.data.tags
    ]


def results_file(workdir: Path) -> dict[str, object]:
    (path,) = workdir.glob("multirun/*/*/optimization_results.yaml")
    container = OmegaConf.to_container(OmegaConf.load(path))
    assert isinstance(container, dict)
    return container


def hydra_config(*overrides: str) -> OmegaConf:
    with initialize_config_dir(str(CONFIG_DIR)):
        return compose("train", overrides=list(overrides), return_hydra_config=True)


def test_sweeper_override_selects_the_pruning_sweeper() -> None:
    cfg = hydra_config("hydra/sweeper=optuna", "optimized_metric=val_loss")
    assert cfg.hydra.sweeper._target_ == "vision_exp.tuning.sweeper.OptunaPruningSweeper"
    assert cfg.hydra.sweeper.pruner._target_ == "optuna.pruners.MedianPruner"
    assert cfg.hydra.sweeper.direction == "minimize"
    assert set(cfg.hydra.sweeper.params) == {
        "optimizer",
        "optimizer.lr",
        "optimizer.weight_decay",
        "trainer.batch_size",
    }


@pytest.mark.parametrize(
    ("preset", "trials", "pruner"),
    [("digits_optuna", 20, "MedianPruner"), ("cifar10_optuna", 50, "HyperbandPruner")],
)
def test_presets_set_the_whole_sweep_in_one_override(preset: str, trials: int, pruner: str) -> None:
    cfg = hydra_config(f"hparams_search={preset}")
    assert cfg.hydra.mode.name == "MULTIRUN"
    assert cfg.hydra.sweeper.study_name == preset
    assert cfg.hydra.sweeper.n_trials == trials
    assert cfg.hydra.sweeper.pruner._target_.endswith(pruner)
    assert cfg.trainer.max_epochs == 10
    assert cfg.hydra.sweeper.direction == "maximize"


def test_relative_sqlite_urls_are_pinned_to_the_sweep_directory(tmp_path: Path) -> None:
    assert (
        absolute_storage_url("sqlite:///optuna.db", tmp_path) == f"sqlite:///{tmp_path}/optuna.db"
    )
    assert absolute_storage_url("sqlite:///a.db?timeout=9", tmp_path).endswith("/a.db?timeout=9")
    for unchanged in ("sqlite:////abs/o.db", "postgresql://u:p@h/db", "sqlite:///:memory:"):
        assert absolute_storage_url(unchanged, tmp_path) == unchanged


def test_parallel_trials_share_the_cores() -> None:
    joblib = OmegaConf.create({"_target_": "x.JoblibLauncher", "n_jobs": 2})
    basic = OmegaConf.create({"_target_": "hydra.BasicLauncher"})
    cores = len(os.sched_getaffinity(0))
    assert launcher_width(joblib) == 2
    assert launcher_width(basic) == 1
    assert launcher_width(OmegaConf.create({"_target_": "JoblibLauncher", "n_jobs": -1})) == (
        os.cpu_count()
    )
    assert threads_per_trial(joblib, 2) == max(1, cores // 2)
    assert threads_per_trial(basic, 4) is None


def test_reporter_records_every_epoch_and_prunes_through_the_study(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="s", storage=url, direction="maximize")
    study.set_user_attr(PRUNER_ATTR, {"_target_": "optuna.pruners.ThresholdPruner", "lower": 0.5})
    asked = study.ask()
    reporter = TrialReporter(open_trial(url, "s", asked.number), "val_acc")
    reporter(0, {"val_acc": 0.7, "val_loss": 1.0})
    with pytest.raises(TrialPruned, match=r"Trial 0 pruned after epoch 1: val_acc=0\.3000"):
        reporter(1, {"val_acc": 0.3, "val_loss": 2.0})
    assert study.trials[0].intermediate_values == {0: 0.7, 1: 0.3}


def test_a_pruned_run_ends_finished(workdir: Path) -> None:
    with pytest.raises(TrialPruned), mlflow_run(None, "digits", "pruned", {}) as run:
        raise TrialPruned("stop")
    assert mlflow.MlflowClient().get_run(run.run_id).info.status == "FINISHED"


def test_sweep_writes_results_and_nests_trial_runs(workdir: Path) -> None:
    run_module("vision_exp.train", [*SWEEP, "hydra.sweeper.n_trials=2"], workdir)
    study = load_study(workdir)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 2
    results = results_file(workdir)
    assert results["best_trial"] == study.best_trial.number
    assert results["best_value"] == study.best_value
    assert results["best_params"] == study.best_params
    assert "optimizer.lr=" in " ".join(results["best_overrides"])  # type: ignore[arg-type]

    (parent,) = sweep_runs(workdir)
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["best_value"] == study.best_value
    assert parent.data.tags["best_trial"] == str(study.best_trial.number)
    client = mlflow.MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    plots = {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert artifacts == {"optimization_results.yaml", "plots"}
    assert plots == {
        f"plots/{n}.png"
        for n in ("optimization_history", "param_importances", "intermediate_values")
    }

    children = trial_runs(workdir)
    assert sorted(children) == [0, 1]
    for number, child in children.items():
        trial = study.trials[number]
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.data.tags[STATE_TAG] == "COMPLETE"
        assert child.data.params["optimizer.lr"] == str(trial.params["optimizer.lr"])
        history = client.get_metric_history(child.info.run_id, "val_acc")
        assert {m.step: m.value for m in history} == trial.intermediate_values


def test_pruned_trials_are_recorded_pruned_and_the_sweep_succeeds(workdir: Path) -> None:
    run_module("vision_exp.train", [*SWEEP, *PRUNE_ALL, "hydra.sweeper.n_trials=2"], workdir)
    study = load_study(workdir)
    assert [t.state.name for t in study.trials] == ["PRUNED", "PRUNED"]
    assert [list(t.intermediate_values) for t in study.trials] == [[0], [0]]
    for child in trial_runs(workdir).values():
        assert child.info.status == "FINISHED"
        assert child.data.tags[STATE_TAG] == "PRUNED"
    assert results_file(workdir)["best_trial"] is None


def test_failed_trials_are_tolerated_up_to_the_rate_and_reported(workdir: Path) -> None:
    grid = ("hydra/sweeper/sampler=grid", "hydra.sweeper.params=null")
    result = run_module(
        "vision_exp.train",
        [*SWEEP, *grid, "trainer.batch_size=choice(16,0)", "hydra.sweeper.max_failure_rate=0.5"],
        workdir,
    )
    study = load_study(workdir)
    states = {t.params["trainer.batch_size"]: t.state.name for t in study.trials}
    assert states == {16: "COMPLETE", 0: "FAIL"}
    (failed,) = [t for t in study.trials if t.state.name == "FAIL"]
    assert "trainer.batch_size=0" in failed.user_attrs[FAIL_REASON_ATTR]
    assert list(results_file(workdir)["failures"]) == [failed.number]  # type: ignore[call-overload]
    assert f"trial {failed.number}: ConfigError" in result.stderr

    stopped = run_module(
        "vision_exp.train",
        [
            *SWEEP,
            *grid,
            "trainer.batch_size=choice(0)",
            "hydra.sweeper.study_name=strict",
            "hydra.sweeper.max_failure_rate=0",
        ],
        workdir,
        check=False,
    )
    assert stopped.returncode != 0
    assert "more than max_failure_rate=0.0 allows" in stopped.stderr


def test_a_direction_against_the_metric_is_refused_before_any_trial(workdir: Path) -> None:
    result = run_module(
        "vision_exp.train", [*SWEEP, "hydra.sweeper.direction=minimize"], workdir, check=False
    )
    assert result.returncode != 0
    assert "hydra.sweeper.direction=minimize but optimized_metric=val_acc" in result.stderr
    assert not (workdir / "optuna.db").exists() or not load_study(workdir).trials


@pytest.mark.slow
def test_an_interrupted_sweep_resumes_numbering_without_repeating_params(workdir: Path) -> None:
    # Long enough that the signal lands mid-training, after trial 1's first checkpoint.
    args = [*SWEEP, "hydra/sweeper/sampler=random", "trainer.max_epochs=30"]
    sweep = subprocess.Popen(
        [sys.executable, "-m", "vision_exp.train", *args, "hydra.sweeper.n_trials=2"],
        cwd=workdir,
        env=cli_env(workdir),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 600
        started = "multirun/*/*/1/checkpoints/last.pt"
        while not list(workdir.glob(started)) and time.monotonic() < deadline:
            time.sleep(0.1)
        sweep.send_signal(signal.SIGINT)
        _, stderr = sweep.communicate(timeout=60)
    finally:
        sweep.kill()
    assert sweep.returncode != 0, stderr
    interrupted = load_study(workdir).trials
    assert [t.state.name for t in interrupted] == ["COMPLETE", "FAIL"]
    assert interrupted[1].user_attrs[FAIL_REASON_ATTR] == "interrupted"

    run_module("vision_exp.train", [*args, "hydra.sweeper.n_trials=3"], workdir)
    trials = load_study(workdir).trials
    assert [t.number for t in trials] == [0, 1, 2, 3]
    assert [t.state.name for t in trials[2:]] == ["COMPLETE", "COMPLETE"]
    proposed = [tuple(sorted(t.params.items())) for t in trials]
    assert len(set(proposed)) == len(proposed)
    resumed_dirs = sorted(p.parent.name for p in workdir.glob("multirun/*/*/*/.hydra"))
    assert resumed_dirs[-2:] == ["2", "3"]
    (parent,) = sweep_runs(workdir)
    assert parent.info.status == "FINISHED"
    assert sorted(trial_runs(workdir)) == [0, 1, 2, 3]


@pytest.mark.slow
def test_joblib_launcher_runs_trials_in_parallel(workdir: Path) -> None:
    result = run_module(
        "vision_exp.train",
        [*SWEEP, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "hydra.sweeper.n_trials=2"],
        workdir,
        timeout=600,
    )
    assert [t.state.name for t in load_study(workdir).trials] == ["COMPLETE", "COMPLETE"]
    # Both trials went to a pool of two worker processes in one call (their run times overlap
    # too, but by how much depends on the machine's load).
    assert result.stderr.count("Joblib.Parallel(n_jobs=2,") == 1
    assert "is launching 2 jobs" in result.stderr
    assert sorted(trial_runs(workdir)) == [0, 1]
    (results,) = workdir.glob("multirun/*/*/optimization_results.yaml")
    assert {"0", "1"} <= {p.name for p in results.parent.iterdir()}, "trials left the sweep dir"
    threads = max(1, len(os.sched_getaffinity(0)) // 2)
    assert result.stderr.count(f"trainer.num_threads={threads}") == 2


@pytest.mark.slow
def test_two_sweep_processes_share_one_study(workdir: Path) -> None:
    args = [*SWEEP, "hydra.sweeper.n_trials=4", "hydra.sweeper.study_name=shared"]
    sweeps = [
        subprocess.Popen(
            [sys.executable, "-m", "vision_exp.train", *args, f"hydra.sweep.dir=sweep{i}"],
            cwd=workdir,
            env=cli_env(workdir),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    try:
        outputs = [sweep.communicate(timeout=600)[1] for sweep in sweeps]
    finally:
        for sweep in sweeps:
            sweep.kill()
    assert [sweep.returncode for sweep in sweeps] == [0, 0], [out[-3000:] for out in outputs]
    trials = load_study(workdir, "shared").trials
    # Both count the study's trials before asking: at most one extra trial from a tie.
    assert 4 <= len(trials) <= 5
    assert [t.number for t in trials] == list(range(len(trials)))
    assert {t.state.name for t in trials} == {"COMPLETE"}
    numbers = [
        {int(p.parent.name) for p in (workdir / f"sweep{i}").glob("*/.hydra")} for i in range(2)
    ]
    # Usually both run some; on a loaded machine the later one may find the study already full.
    assert numbers[0].isdisjoint(numbers[1])
    assert numbers[0] | numbers[1] == set(range(len(trials)))
