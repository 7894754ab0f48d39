"""PNG plots written beside a bundle: training curves and the validation confusion matrix.

Figures are drawn on matplotlib's Agg canvas directly, without pyplot: no global figure state, no
GUI backend, safe in a headless container.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from app.training.scores import ClassificationReport

CURVES_FILE = "training_curves.png"
CONFUSION_FILE = "confusion_matrix.png"


def _save(figure: Figure, path: Path) -> Path:
    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=100)
    return path


def plot_training_curves(
    history: Sequence[dict[str, float]], best_epoch: int, title: str, path: Path
) -> Path:
    """Loss and accuracy per epoch for train and validation, and the head's learning rate at each
    epoch's end (the schedule is per step; warm-up, cosine decay and where the run stopped show)."""
    epochs = [int(h["epoch"]) for h in history]
    figure = Figure(figsize=(14, 4), layout="constrained")
    figure.suptitle(title)
    for axes, metric, name in (
        (figure.add_subplot(1, 3, 1), "loss", "loss"),
        (figure.add_subplot(1, 3, 2), "acc", "accuracy"),
    ):
        for split in ("train", "val"):
            axes.plot(epochs, [h[f"{split}_{metric}"] for h in history], marker="o", label=split)
        _finish_epoch_axes(axes, name, best_epoch)
    axes = figure.add_subplot(1, 3, 3)
    axes.plot(epochs, [h["lr"] for h in history], marker="o", color="tab:green", label="head lr")
    _finish_epoch_axes(axes, "learning rate", best_epoch)
    return _save(figure, path)


def _finish_epoch_axes(axes: Axes, name: str, best_epoch: int) -> None:
    axes.axvline(best_epoch, color="grey", linestyle="--", label=f"best (epoch {best_epoch})")
    axes.set_xlabel("epoch")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_title(name)
    axes.grid(alpha=0.3)
    axes.legend()


def plot_confusion_matrix(report: ClassificationReport, title: str, path: Path) -> Path:
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
    axes.set_title(f"{title}\nvalidation accuracy {100 * report.accuracy:.2f}%")
    threshold = matrix.max() / 2
    for row, col in zip(*matrix.nonzero(), strict=True):
        count = matrix[row, col]
        colour = "white" if count > threshold else "black"
        axes.text(col, row, str(count), ha="center", va="center", color=colour)
    return _save(figure, path)
