"""The final evaluation a user reads: accuracy, per-class scores, confusion matrix, curves.

scikit-learn's metrics and matplotlib are imported where they are used: together they take about
a second to import, which a run would otherwise spend before its first training step.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vision_exp.engine.loop import EvalResult


@dataclass
class EvaluationReport:
    split: str
    loss: float
    accuracy: float
    per_class: dict[str, dict[str, float]]
    confusion: np.ndarray
    classes: list[str]

    @property
    def macro_f1(self) -> float:
        return float(self.per_class["macro avg"]["f1-score"])

    def metrics(self) -> dict[str, float]:
        return {
            f"{self.split}_loss": self.loss,
            f"{self.split}_acc": self.accuracy,
            f"{self.split}_macro_f1": self.macro_f1,
        }

    def format(self) -> str:
        lines = [
            f"{self.split}: accuracy {self.accuracy:.4f}, loss {self.loss:.4f}, "
            f"macro F1 {self.macro_f1:.4f}",
            f"{'class':>16} {'precision':>9} {'recall':>9} {'f1':>9} {'support':>8}",
        ]
        for name in self.classes:
            row = self.per_class[name]
            lines.append(
                f"{name:>16} {row['precision']:9.4f} {row['recall']:9.4f} "
                f"{row['f1-score']:9.4f} {int(row['support']):8d}"
            )
        return "\n".join(lines)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def build_report(result: EvalResult, classes: Sequence[str], split: str) -> EvaluationReport:
    from sklearn.metrics import classification_report, confusion_matrix

    labels = list(range(len(classes)))
    truth, preds = result.targets.numpy(), result.predictions.numpy()
    per_class: dict[str, Any] = classification_report(
        truth, preds, labels=labels, target_names=list(classes), output_dict=True, zero_division=0
    )
    per_class.pop("accuracy", None)
    return EvaluationReport(
        split=split,
        loss=result.loss,
        accuracy=result.accuracy,
        per_class=per_class,
        confusion=confusion_matrix(truth, preds, labels=labels),
        classes=list(classes),
    )


def write_report(report: EvaluationReport, folder: Path) -> list[Path]:
    """Files a user opens without MLflow: JSON and CSV tables, and a confusion-matrix plot."""
    folder.mkdir(parents=True, exist_ok=True)
    prefix = folder / report.split
    summary = {
        "split": report.split,
        "accuracy": report.accuracy,
        "loss": report.loss,
        "per_class": report.per_class,
        "confusion_matrix": report.confusion.tolist(),
        "classes": report.classes,
    }
    json_path = prefix.with_name(f"{report.split}_metrics.json")
    json_path.write_text(json.dumps(summary, indent=2), encoding="utf-8")

    csv_path = prefix.with_name(f"{report.split}_per_class.csv")
    with csv_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["class", "precision", "recall", "f1", "support"])
        for name in report.classes:
            row = report.per_class[name]
            writer.writerow(
                [name, row["precision"], row["recall"], row["f1-score"], row["support"]]
            )

    from sklearn.metrics import ConfusionMatrixDisplay

    plt = _pyplot()
    png_path = prefix.with_name(f"{report.split}_confusion_matrix.png")
    size = max(5.0, 0.35 * len(report.classes))
    fig, ax = plt.subplots(figsize=(size, size))
    ConfusionMatrixDisplay(report.confusion, display_labels=report.classes).plot(
        ax=ax, include_values=len(report.classes) <= 20, colorbar=False, xticks_rotation="vertical"
    )
    ax.set_title(f"{report.split}: accuracy {report.accuracy:.2%}")
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return [json_path, csv_path, png_path]


def write_history(history: Sequence[dict[str, float]], folder: Path) -> list[Path]:
    """Per-epoch metrics as CSV and the loss/accuracy curves as a PNG."""
    folder.mkdir(parents=True, exist_ok=True)
    csv_path = folder / "history.csv"
    keys = sorted({key for row in history for key in row}, key=lambda k: (k != "epoch", k))
    with csv_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=keys)
        writer.writeheader()
        writer.writerows(history)

    plt = _pyplot()
    epochs = [row["epoch"] for row in history]
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 4))
    for split in ("train", "val"):
        loss_ax.plot(epochs, [row[f"{split}_loss"] for row in history], label=split, marker=".")
        acc_ax.plot(epochs, [row[f"{split}_acc"] for row in history], label=split, marker=".")
    loss_ax.set(title="loss", xlabel="epoch")
    acc_ax.set(title="accuracy", xlabel="epoch")
    loss_ax.legend()
    acc_ax.legend()
    fig.tight_layout()
    png_path = folder / "training_curves.png"
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return [csv_path, png_path]
