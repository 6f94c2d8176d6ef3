import json
from pathlib import Path

import torch

from vision_exp.engine.loop import EvalResult
from vision_exp.evaluation.report import build_report, write_history, write_report


def test_report_tables_and_plots(tmp_path: Path) -> None:
    targets = torch.tensor([0, 0, 1, 1, 2, 2])
    predictions = torch.tensor([0, 1, 1, 1, 2, 0])
    result = EvalResult(loss_sum=3.0, correct=4, count=6, predictions=predictions, targets=targets)
    report = build_report(result, ["a", "b", "c"], "test")
    assert report.accuracy == 4 / 6 and report.loss == 0.5
    assert report.per_class["b"]["recall"] == 1.0
    assert report.per_class["b"]["precision"] == 2 / 3
    assert report.confusion.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert report.metrics()["test_acc"] == 4 / 6
    assert "test: accuracy 0.6667" in report.format()
    files = write_report(report, tmp_path)
    assert sorted(p.name for p in files) == [
        "test_confusion_matrix.png",
        "test_metrics.json",
        "test_per_class.csv",
    ]
    saved = json.loads((tmp_path / "test_metrics.json").read_text())
    assert saved["confusion_matrix"][2] == [1, 0, 1]
    assert (tmp_path / "test_per_class.csv").read_text().splitlines()[
        0
    ] == "class,precision,recall,f1,support"


def test_history_table_and_curves(tmp_path: Path) -> None:
    history = [
        {"epoch": 0.0, "train_loss": 1.0, "val_loss": 1.1, "train_acc": 0.5, "val_acc": 0.4},
        {"epoch": 1.0, "train_loss": 0.5, "val_loss": 0.7, "train_acc": 0.8, "val_acc": 0.7},
    ]
    csv_path, png_path = write_history(history, tmp_path)
    assert csv_path.read_text().splitlines()[0].startswith("epoch,")
    assert png_path.stat().st_size > 1000
