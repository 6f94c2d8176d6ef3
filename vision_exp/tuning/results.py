"""What a sweep leaves behind: optimization_results.yaml, Optuna's plots, a summary line."""

from __future__ import annotations

import logging
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from omegaconf import OmegaConf
from optuna.trial import TrialState

from vision_exp.tracking.redact import redact_text

log = logging.getLogger(__name__)

RESULTS_FILE = "optimization_results.yaml"


def state_counts(study: optuna.Study) -> dict[str, int]:
    counts = Counter(trial.state.name for trial in study.get_trials(deepcopy=False))
    return dict(sorted(counts.items()))


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    """None until a trial completes (all pruned or failed so far)."""
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return None
    return study.best_trial


FAIL_REASON_ATTR = "fail_reason"


def best_overrides(trial: optuna.trial.FrozenTrial) -> list[str]:
    """The best trial as command-line overrides; the upstream sweeper stores the sweep's fixed
    parameters as user attributes, so they are included."""
    fixed = {k: v for k, v in trial.user_attrs.items() if k != FAIL_REASON_ATTR}
    return [f"{name}={value}" for name, value in {**fixed, **trial.params}.items()]


def results(
    study: optuna.Study, storage_url: str, metric: str, failures: dict[int, str]
) -> dict[str, Any]:
    best = best_trial(study)
    return {
        "name": "optuna",
        "study_name": study.study_name,
        "storage": redact_text(storage_url),
        "direction": study.direction.name.lower(),
        "optimized_metric": metric,
        "trials": state_counts(study),
        "best_trial": None if best is None else best.number,
        "best_value": None if best is None else best.value,
        "best_params": {} if best is None else best.params,
        "best_overrides": [] if best is None else best_overrides(best),
        "failures": failures,
    }


def write_results(summary: dict[str, Any], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / RESULTS_FILE
    OmegaConf.save(OmegaConf.create(summary), path)
    return path


def save_plots(study: optuna.Study, folder: Path) -> list[Path]:
    """Each plot Optuna can draw from the trials so far. Matplotlib is imported here, headless,
    so that training runs (which import the sweeper) do not pay for it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as optuna_plots

    # name -> (plot, completed trials it needs)
    plots: dict[str, tuple[Callable[[optuna.Study], Any], int]] = {
        "optimization_history": (optuna_plots.plot_optimization_history, 1),
        "param_importances": (optuna_plots.plot_param_importances, 2),
        "intermediate_values": (optuna_plots.plot_intermediate_values, 0),
    }
    folder.mkdir(parents=True, exist_ok=True)
    completed = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    saved = []
    for name, (plot, needed) in plots.items():
        if completed < needed:
            log.info("No %s plot: it needs %d completed trials.", name, needed)
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                axes = plot(study)
        except (ValueError, RuntimeError) as error:
            log.info("No %s plot yet: %s", name, error)
            continue
        figure = axes.flat[0].figure if hasattr(axes, "flat") else axes.figure
        path = folder / f"{name}.png"
        figure.savefig(path, dpi=120, bbox_inches="tight")
        plt.close(figure)
        saved.append(path)
    return saved


def summary_line(summary: dict[str, Any]) -> str:
    counts = ", ".join(f"{n} {state}" for state, n in summary["trials"].items())
    best = (
        f"best {summary['optimized_metric']} {summary['best_value']:.4f} "
        f"(trial {summary['best_trial']}: {' '.join(summary['best_overrides'])})"
        if summary["best_trial"] is not None
        else "no trial completed"
    )
    return f"Study {summary['study_name']}: {counts}; {best}."
