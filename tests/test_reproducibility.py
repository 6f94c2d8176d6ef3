"""Replay, rerun and resume through the real CLI: one trained run, reproduced every way a user can.

The run is trained from a preset in a test-owned config folder, which is edited afterwards: a
replay must not notice the edit, Hydra's rerun must.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pytest

from tests.conftest import cli_env, mlflow_runs, run_module

pytestmark = pytest.mark.slow

EPOCHS = 12
PRESET = """# @package _global_
defaults:
  - fast
  - _self_
optimizer:
  lr: {lr}
trainer:
  max_epochs: {epochs}
"""
# Timing metrics differ from run to run by nature; everything else must match exactly.
TIMING = {"epoch_time", "images_per_sec"}


def write_preset(conf_dir: Path, lr: float) -> None:
    path = conf_dir / "debug" / "mine.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(PRESET.format(lr=lr, epochs=EPOCHS), encoding="utf-8")


def train_args(conf_dir: Path) -> list[str]:
    return [
        "--config-dir",
        str(conf_dir),
        "experiment=digits",
        "debug=mine",
        "trainer.deterministic=true",
    ]


def final_metrics(run: mlflow.entities.Run) -> dict[str, float]:
    return {k: v for k, v in run.data.metrics.items() if k not in TIMING}


def run_by_tag(workdir: Path, key: str, value: str) -> mlflow.entities.Run:
    found = [r for r in mlflow_runs(workdir) if r.data.tags.get(key) == value]
    assert len(found) == 1, [r.data.tags for r in mlflow_runs(workdir)]
    return found[0]


@dataclass
class Trained:
    workdir: Path
    folder: Path
    run: mlflow.entities.Run
    # The preset as the run used it; ``workdir/conf`` holds the edited one.
    unedited_conf: Path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, mlflow_template: Path) -> Trained:
    workdir = tmp_path_factory.mktemp("repro")
    shutil.copy(mlflow_template, workdir / "mlflow.db")
    write_preset(workdir / "conf", lr=0.01)
    write_preset(workdir / "unedited_conf", lr=0.01)
    run_module("vision_exp.train", train_args(workdir / "conf"), workdir)
    (run,) = mlflow_runs(workdir)
    write_preset(workdir / "conf", lr=0.0005)
    return Trained(workdir, Path(run.data.tags["output_dir"]), run, workdir / "unedited_conf")


def test_replay_from_folder_ignores_config_edits(trained: Trained) -> None:
    run_module("vision_exp.replay", [str(trained.folder)], trained.workdir)
    replay = run_by_tag(trained.workdir, "replay_of", str(trained.folder))
    assert replay.info.run_id != trained.run.info.run_id
    assert replay.data.tags["replay_of_run"] == trained.run.info.run_id
    assert Path(replay.data.tags["output_dir"]) != trained.folder
    assert final_metrics(replay) == final_metrics(trained.run)
    assert replay.data.params["optimizer.lr"] == "0.01"


def test_replay_from_run_id_with_overrides(trained: Trained) -> None:
    source = f"runs:/{trained.run.info.run_id}"
    run_module("vision_exp.replay", [source, "trainer.progress_bar=true"], trained.workdir)
    replay = run_by_tag(trained.workdir, "replay_of", source)
    assert replay.data.tags["replay_overrides"] == "trainer.progress_bar=true"
    assert replay.data.params["trainer.progress_bar"] == "True"
    assert final_metrics(replay) == final_metrics(trained.run)


def test_experimental_rerun_recomposes_the_edited_configs(trained: Trained) -> None:
    rerun_dir = trained.workdir / "rerun"
    run_module(
        "vision_exp.train",
        [
            "--config-dir",
            str(trained.workdir / "conf"),
            "--experimental-rerun",
            str(trained.folder),
            f"hydra.run.dir={rerun_dir}",
        ],
        trained.workdir,
    )
    rerun = run_by_tag(trained.workdir, "output_dir", str(rerun_dir))
    assert rerun.data.params["optimizer.lr"] == "0.0005"
    assert final_metrics(rerun) != final_metrics(trained.run)


def wait_for(path: Path, process: subprocess.Popen[str], timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not path.is_file():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def test_resume_after_sigterm_matches_the_uninterrupted_run(trained: Trained) -> None:
    workdir, folder = trained.workdir, trained.workdir / "interrupted"
    args = [*train_args(trained.unedited_conf), f"hydra.run.dir={folder}"]
    process = subprocess.Popen(
        [sys.executable, "-m", "vision_exp.train", *args],
        cwd=workdir,
        env=cli_env(workdir),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    wait_for(folder / "checkpoints" / "last.pt", process)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, output
    killed = run_by_tag(workdir, "output_dir", str(folder))
    assert killed.info.status == "KILLED"
    client = mlflow.MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    epochs_done = len(client.get_metric_history(killed.info.run_id, "val_acc"))
    assert 1 <= epochs_done < EPOCHS, "the signal must land mid-run"
    assert f"resume={folder}" in output

    resumed_dir = workdir / "resumed"
    run_module(
        "vision_exp.train",
        [*train_args(trained.unedited_conf), f"resume={folder}", f"hydra.run.dir={resumed_dir}"],
        workdir,
    )
    resumed = client.get_run(killed.info.run_id)
    assert resumed.info.status == "FINISHED"
    assert resumed.data.tags["output_dir"] == str(resumed_dir)
    assert final_metrics(resumed) == final_metrics(trained.run)
    steps = [m.step for m in client.get_metric_history(killed.info.run_id, "val_acc")]
    assert sorted(steps) == list(range(EPOCHS))


def test_truncated_checkpoint_is_refused(trained: Trained) -> None:
    checkpoint = trained.workdir / "truncated.pt"
    data = (trained.folder / "checkpoints" / "last.pt").read_bytes()
    checkpoint.write_bytes(data[: len(data) // 2])
    runs_before = len(mlflow_runs(trained.workdir))
    result = run_module(
        "vision_exp.train",
        [*train_args(trained.unedited_conf), f"resume={checkpoint}"],
        trained.workdir,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert f"Checkpoint {checkpoint} cannot be read" in output
    assert "truncated" in output
    assert "Traceback" not in output
    assert len(mlflow_runs(trained.workdir)) == runs_before
