"""``hydra/sweeper=optuna``: the upstream Optuna sweeper, extended where it falls short.

Upstream records a job that raises ``optuna.TrialPruned`` as FAIL and aborts the sweep, has no
pruner, restarts its sampler's random stream on resume (re-proposing the points it already tried)
and numbers jobs independently of trials. Here each job is told its trial number and the study, and
reports to that trial itself (vision_exp.tuning.trial); the sweeper records PRUNED as PRUNED,
tolerates failures up to ``max_failure_rate``, resumes a study where it stopped and keeps an MLflow
run for the whole sweep.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import re
import sys
from pathlib import Path
from typing import Any

import optuna
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.utils import instantiate
from hydra_plugins.hydra_optuna_sweeper._impl import (
    OptunaSweeperImpl,
    create_params_from_overrides,
)
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import BaseDistribution
from optuna.trial import TrialState

from vision_exp.engine.early_stopping import metric_mode
from vision_exp.errors import ConfigError, VisionExpError
from vision_exp.tracking.redact import redact_text
from vision_exp.tuning import results
from vision_exp.tuning.parent_run import ParentRun, parent_run
from vision_exp.tuning.storage import absolute_storage_url, open_storage
from vision_exp.tuning.trial import PRUNER_ATTR, PRUNER_TARGETS

log = logging.getLogger(__name__)

SAMPLER_TARGETS = ("optuna.samplers.*", "hydra_plugins.hydra_optuna_sweeper.*")
PARENT_RUN_ATTR = "mlflow_parent_run_id"
INTERRUPTED = "interrupted"
_STUDY_NAME = re.compile(r"[A-Za-z0-9_.\-]+")


class TuningError(VisionExpError):
    """The sweep stopped: more trials failed than ``max_failure_rate`` allows."""


def register_sweeper() -> None:
    """Hydra instantiates only plugins it knows; idempotent."""
    Plugins.instance().register(OptunaPruningSweeper)


def threads_per_trial(launcher: DictConfig, concurrent_trials: int) -> int | None:
    """Cores per trial when trials share this machine (joblib), None when they do not."""
    if not str(launcher.get("_target_", "")).endswith("JoblibLauncher"):
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // concurrent_trials)


def launcher_width(launcher: DictConfig) -> int:
    """How many jobs the launcher runs at once: joblib's n_jobs (negative counts from the number of
    cores, as in joblib), one for launchers that run jobs in turn."""
    if not str(launcher.get("_target_", "")).endswith("JoblibLauncher"):
        return 1
    n_jobs = int(launcher.get("n_jobs") or 1)
    return n_jobs if n_jobs > 0 else max(1, (os.cpu_count() or 1) + 1 + n_jobs)


def counted_trials(study: optuna.Study) -> int:
    """Trials that use up n_trials: all but those a Ctrl-C cut short (a resumed sweep replaces
    them) and WAITING ones (enqueued, not started). RUNNING ones count: another process sharing
    the study is training them."""
    return sum(
        1
        for trial in study.get_trials(deepcopy=False)
        if trial.state is not TrialState.WAITING
        and trial.user_attrs.get(results.FAIL_REASON_ATTR) != INTERRUPTED
    )


class OptunaPruningSweeper(OptunaSweeperImpl):
    def __init__(
        self,
        sampler: DictConfig,
        pruner: DictConfig,
        direction: str,
        storage: str | None,
        study_name: str | None,
        n_trials: int,
        n_jobs: int | None,
        max_failure_rate: float,
        params: DictConfig | None,
        custom_search_space: str | None = None,
    ) -> None:
        super().__init__(
            sampler=None,
            direction=direction,
            storage=storage,
            study_name=study_name,
            n_trials=n_trials,
            n_jobs=n_jobs or 0,
            # Checked in _check_settings, with the other settings, rather than by upstream's assert.
            max_failure_rate=0.0,
            custom_search_space=custom_search_space,
            params=params,
        )
        self.max_failure_rate = max_failure_rate
        self.sampler_cfg = sampler
        self.pruner_cfg = pruner

    def sweep(self, arguments: list[str]) -> None:
        """Bad settings and too many failures end the sweep with one paragraph and exit 1, like a
        bad training command; the sweep's MLflow run (if it started) is left FAILED."""
        try:
            self._sweep(arguments)
        except VisionExpError as error:
            log.error("%s", error)
            sys.exit(1)

    def _sweep(self, arguments: list[str]) -> None:
        assert self.config is not None
        assert self.launcher is not None
        space, fixed_params, fixed_overrides = create_params_from_overrides(
            [*self._parse_sweeper_params_config(), *arguments]
        )
        for name in fixed_params:
            space.pop(name, None)
        storage_url = self._check_settings()
        study = self._open_study(storage_url, space)
        width = self.n_jobs or launcher_width(self.config.hydra.launcher)
        mlflow_cfg = self.config.mlflow
        with parent_run(
            mlflow_cfg.tracking_uri,
            mlflow_cfg.experiment_name,
            study.study_name,
            study.user_attrs.get(PARENT_RUN_ATTR),
        ) as parent:
            study.set_user_attr(PARENT_RUN_ATTR, parent.run_id)
            parent.set_tags(self._sweep_tags(study, storage_url, space))
            job_overrides = self._job_overrides(study, parent, width)
            failures: dict[int, str] = {}
            try:
                self._run_trials(
                    study,
                    parent,
                    space,
                    fixed_params,
                    [*fixed_overrides, *job_overrides],
                    width,
                    failures,
                )
            finally:
                self._finish(study, storage_url, parent, failures)

    def _check_settings(self) -> str:
        """Everything a sweep can get wrong before it starts, reported at once."""
        assert self.config is not None
        metric = self.config.optimized_metric
        problems = []
        expected = f"{metric_mode(metric)}imize"
        if self.direction != expected:
            problems.append(
                f"hydra.sweeper.direction={self.direction} but optimized_metric={metric} should "
                f"be {expected}d (leave direction unset to follow optimized_metric)"
            )
        if not self.storage:
            problems.append(
                "hydra.sweeper.storage is null, but trials report to the study from their own "
                "jobs through its storage: use an RDB URL such as sqlite:///optuna.db"
            )
        if not self.study_name or not _STUDY_NAME.fullmatch(str(self.study_name)):
            problems.append(
                f"hydra.sweeper.study_name={self.study_name!r} is not allowed (expected letters, "
                "digits, '_', '-' or '.')"
            )
        if self.n_trials < 1:
            problems.append(f"hydra.sweeper.n_trials={self.n_trials} (expected an integer >= 1)")
        if not 0 <= self.max_failure_rate <= 1:
            problems.append(
                f"hydra.sweeper.max_failure_rate={self.max_failure_rate} (expected a number in "
                "[0, 1])"
            )
        if problems:
            raise ConfigError("Invalid sweep: " + "; ".join(problems) + ".")
        return absolute_storage_url(str(self.storage), Path(self.config.hydra.runtime.cwd))

    def _open_study(self, storage_url: str, space: dict[str, BaseDistribution]) -> optuna.Study:
        """Create or continue the study, with a sampler seeded past the trials it already holds."""
        storage = open_storage(storage_url)
        study = optuna.create_study(
            study_name=self.study_name,
            storage=storage,
            direction=self.direction,
            load_if_exists=True,
        )
        if study.direction.name.lower() != self.direction:
            raise ConfigError(
                f"Study {self.study_name} in {redact_text(storage_url)} was created to "
                f"{study.direction.name.lower()}, but this sweep would {self.direction}: "
                "choose another hydra.sweeper.study_name."
            )
        existing = len(study.get_trials(deepcopy=False))
        self.sampler = self._make_sampler(existing, space)
        pruner_cfg = OmegaConf.to_container(self.pruner_cfg, resolve=True)
        pruner = instantiate(pruner_cfg, _execution_whitelist_=PRUNER_TARGETS)
        study = optuna.load_study(
            study_name=study.study_name, storage=storage, sampler=self.sampler, pruner=pruner
        )
        study.set_user_attr(PRUNER_ATTR, pruner_cfg)
        log.info(
            "Study %s in %s (%s trials so far): %s %s, sampler %s, pruner %s",
            study.study_name,
            redact_text(storage_url),
            existing,
            self.direction,
            self.config.optimized_metric if self.config else "",
            type(self.sampler).__name__,
            type(pruner).__name__,
        )
        return study

    def _make_sampler(self, existing: int, space: dict[str, BaseDistribution]) -> Any:
        """A resumed sweep must not replay the random stream of the first one, which would
        re-propose the same points: the seed moves on by the number of trials already run."""
        sampler_cfg = OmegaConf.to_container(self.sampler_cfg, resolve=True)
        assert isinstance(sampler_cfg, dict)
        if sampler_cfg.get("seed") is not None:
            sampler_cfg["seed"] = int(sampler_cfg["seed"]) + existing
        sampler = instantiate(sampler_cfg, _execution_whitelist_=SAMPLER_TARGETS)
        if isinstance(sampler, functools.partial):
            grid = {name: self._to_grid_sampler_choices(d) for name, d in space.items()}
            self.n_trials = min(self.n_trials, math.prod(len(v) for v in grid.values()))
            return sampler(grid)
        return sampler

    def _job_overrides(self, study: optuna.Study, parent: ParentRun, width: int) -> list[str]:
        """What every trial's job needs besides its parameters (its trial number comes per job)."""
        assert self.config is not None
        overrides = [
            f"tuning.study_name={study.study_name}",
            f"tuning.parent_run_id={parent.run_id}",
        ]
        threads = threads_per_trial(self.config.hydra.launcher, width)
        if threads is not None and self.config.trainer.num_threads is None:
            overrides.append(f"trainer.num_threads={threads}")
        return overrides

    def _trial_overrides(self, study: optuna.Study, trial: optuna.Trial) -> list[str]:
        assert self.config is not None
        overrides = [f"tuning.trial_number={trial.number}"]
        if self.config.mlflow.run_name is None:
            overrides.append(f"mlflow.run_name={study.study_name}-trial-{trial.number}")
        return overrides

    def _sweep_tags(
        self, study: optuna.Study, storage_url: str, space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        assert self.config is not None
        return {
            "optuna.study": study.study_name,
            "optuna.storage": storage_url,
            "optuna.direction": self.direction,
            "optuna.sampler": type(self.sampler).__name__,
            "optuna.pruner": str(self.pruner_cfg.get("_target_", "")).rsplit(".", 1)[-1],
            "optuna.search_space": "; ".join(f"{k}: {v}" for k, v in space.items()),
            "optimized_metric": self.config.optimized_metric,
        }

    def _run_trials(
        self,
        study: optuna.Study,
        parent: ParentRun,
        space: dict[str, BaseDistribution],
        fixed_params: dict[str, Any],
        job_overrides: list[str],
        width: int,
        failures: dict[int, str],
    ) -> None:
        assert self.launcher is not None
        to_run = self.n_trials - counted_trials(study)
        if to_run <= 0:
            log.info(
                "Study %s already holds %d trials (n_trials): raise hydra.sweeper.n_trials to "
                "add more.",
                study.study_name,
                self.n_trials,
            )
            return
        allowed_failures = math.floor(self.max_failure_rate * to_run)
        while (remaining := self.n_trials - counted_trials(study)) > 0:
            trials = [study.ask() for _ in range(min(remaining, width))]
            batch = [
                (*params, *self._trial_overrides(study, trial), *job_overrides)
                for trial, params in zip(
                    trials, self._configure_trials(trials, space, fixed_params, []), strict=True
                )
            ]
            try:
                returns = self.launcher.launch(batch, initial_job_idx=trials[0].number)
            except BaseException:
                for trial in trials:
                    self._tell(study, parent, trial, TrialState.FAIL, reason=INTERRUPTED)
                raise
            for trial, job in zip(trials, returns, strict=True):
                reason = self._record(study, parent, trial, job)
                if reason is not None:
                    failures[trial.number] = reason
            if len(failures) > allowed_failures:
                raise TuningError(
                    f"{len(failures)} trials failed, more than max_failure_rate="
                    f"{self.max_failure_rate} allows for {to_run} trials; stopping the sweep. "
                    + " ".join(f"Trial {n}: {why}" for n, why in failures.items())
                )

    def _record(
        self, study: optuna.Study, parent: ParentRun, trial: optuna.Trial, job: JobReturn
    ) -> str | None:
        """Tell the study how the job ended; the failure's reason, or None."""
        if job.status is JobStatus.FAILED:
            # Read directly: JobReturn.return_value would re-raise it and print "Error executing
            # job", which is wrong for a pruned trial; a failure gets its own line below.
            error = job._return_value
            if isinstance(error, optuna.TrialPruned):
                self._tell(study, parent, trial, TrialState.PRUNED)
                return None
            reason = f"{type(error).__name__}: {error}"
            self._tell(study, parent, trial, TrialState.FAIL, reason=reason)
            log.warning("Trial %d failed: %s", trial.number, reason)
            return reason
        try:
            value = float(job.return_value)
        except (TypeError, ValueError):
            value = math.nan
        if not math.isfinite(value):
            reason = f"the job returned {job.return_value!r}, not a finite number"
            self._tell(study, parent, trial, TrialState.FAIL, reason=reason)
            return reason
        self._tell(study, parent, trial, TrialState.COMPLETE, value=value)
        parent.log_metric("trial_value", value, trial.number)
        return None

    @staticmethod
    def _tell(
        study: optuna.Study,
        parent: ParentRun,
        trial: optuna.Trial,
        state: TrialState,
        value: float | None = None,
        reason: str | None = None,
    ) -> None:
        if reason is not None:
            trial.set_user_attr(results.FAIL_REASON_ATTR, reason[:1000])
        try:
            study.tell(trial, value, state=state, skip_if_finished=True)
        except RuntimeError:
            # GridSampler calls study.stop() once the grid is exhausted, which only works inside
            # study.optimize; the trial's state is stored by then.
            if not isinstance(study.sampler, optuna.samplers.GridSampler):
                raise
        parent.tag_trial(trial.number, state.name)

    def _finish(
        self, study: optuna.Study, storage_url: str, parent: ParentRun, failures: dict[int, str]
    ) -> None:
        """Results file, plots and best trial on the sweep's run, even when the sweep stopped."""
        assert self.config is not None
        summary = results.results(study, storage_url, self.config.optimized_metric, failures)
        path = results.write_results(summary, Path(self.config.hydra.sweep.dir))
        parent.log_artifact(path)
        for plot in results.save_plots(study, Path(self.config.hydra.sweep.dir) / "plots"):
            parent.log_artifact(plot, "plots")
        if summary["best_trial"] is not None:
            parent.log_metric("best_value", summary["best_value"], len(study.trials))
            parent.set_tags(
                {
                    "best_trial": summary["best_trial"],
                    **{f"best_params.{k}": v for k, v in summary["best_params"].items()},
                }
            )
        log.info("%s Results: %s", results.summary_line(summary), path)
        if failures:
            log.warning(
                "%d trials failed in this sweep: %s",
                len(failures),
                "; ".join(f"trial {n}: {why}" for n, why in failures.items()),
            )
