"""PNG plots written beside a bundle: training curves and the validation confusion matrix.

Figures are drawn on matplotlib's Agg canvas directly, without pyplot: no global figure state, no
GUI backend, safe in a headless container.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from app.training.metrics import ClassificationReport

CURVES_FILE = "training_curves.png"
CONFUSION_FILE = "confusion_matrix.png"


def _save(figure: Figure, path: Path) -> Path:
    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=100)
    return path


def plot_training_curves(history: Sequence[dict[str, float]], best_epoch: int, path: Path) -> Path:
    """Loss and accuracy per epoch for train and validation, the best epoch marked."""
    epochs = [int(h["epoch"]) for h in history]
    figure = Figure(figsize=(10, 4), layout="constrained")
    for axes, metric, title in (
        (figure.add_subplot(1, 2, 1), "loss", "loss"),
        (figure.add_subplot(1, 2, 2), "acc", "accuracy"),
    ):
        for split in ("train", "val"):
            axes.plot(epochs, [h[f"{split}_{metric}"] for h in history], marker="o", label=split)
        axes.axvline(best_epoch, color="grey", linestyle="--", label=f"best (epoch {best_epoch})")
        axes.set_xlabel("epoch")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_title(title)
        axes.grid(alpha=0.3)
        axes.legend()
    return _save(figure, path)


def plot_confusion_matrix(report: ClassificationReport, path: Path) -> Path:
    """Counts per (true, predicted) class, annotated, darker for larger counts."""
    labels = report.labels
    matrix = report.confusion.numpy()
    side = max(4.0, 0.6 * len(labels) + 2)
    figure = Figure(figsize=(side + 1, side), layout="constrained")
    axes = figure.add_subplot()
    image = axes.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=axes)
    axes.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    axes.set_yticks(range(len(labels)), labels)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(f"validation accuracy {100 * report.accuracy:.2f}%")
    threshold = matrix.max() / 2
    for row, col in zip(*matrix.nonzero(), strict=True):
        count = matrix[row, col]
        colour = "white" if count > threshold else "black"
        axes.text(col, row, str(count), ha="center", va="center", color=colour)
    return _save(figure, path)
