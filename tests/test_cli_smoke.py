from pathlib import Path

from tests.conftest import QUICK, mlflow_runs, run_module


def test_digits_quick_run_lands_in_mlflow(workdir: Path) -> None:
    result = run_module("vision_exp.train", QUICK, workdir)
    runs = mlflow_runs(workdir)
    assert len(runs) == 1, result.stderr
    assert runs[0].info.status == "FINISHED"
