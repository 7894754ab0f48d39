"""Classification metrics from a confusion matrix, as values, JSON and plain-text tables.

Everything derives from the one matrix (rows: true class, columns: predicted class), so the
accuracy, the per-class numbers and the printed matrix can never disagree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch


def confusion_matrix(
    targets: torch.Tensor, predictions: torch.Tensor, classes: int
) -> torch.Tensor:
    """(classes, classes) int64 counts; entry [t, p] counts images of class t predicted as p."""
    flat = targets.long().cpu() * classes + predictions.long().cpu()
    return torch.bincount(flat, minlength=classes * classes).reshape(classes, classes)


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


@dataclass(frozen=True)
class ClassMetrics:
    """One class's row of the report; precision or recall is None where it is undefined (0/0)."""

    label: str
    support: int
    precision: float | None
    recall: float | None


@dataclass(frozen=True)
class ClassificationReport:
    """Accuracy and per-class precision/recall of one labelled image set."""

    labels: tuple[str, ...]
    confusion: torch.Tensor

    def __post_init__(self) -> None:
        if tuple(self.confusion.shape) != (len(self.labels), len(self.labels)):
            raise ValueError(
                f"confusion matrix of shape {tuple(self.confusion.shape)} "
                f"does not fit {len(self.labels)} labels"
            )

    @property
    def total(self) -> int:
        return int(self.confusion.sum())

    @property
    def correct(self) -> int:
        return int(self.confusion.diagonal().sum())

    @property
    def accuracy(self) -> float:
        return _ratio(self.correct, self.total) or 0.0

    def per_class(self) -> list[ClassMetrics]:
        hits = self.confusion.diagonal()
        supports = self.confusion.sum(dim=1)
        predicted = self.confusion.sum(dim=0)
        return [
            ClassMetrics(
                label=label,
                support=int(supports[i]),
                precision=_ratio(int(hits[i]), int(predicted[i])),
                recall=_ratio(int(hits[i]), int(supports[i])),
            )
            for i, label in enumerate(self.labels)
        ]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: fractions in [0, 1], null where undefined."""
        return {
            "accuracy": self.accuracy,
            "correct": self.correct,
            "images": self.total,
            "labels": list(self.labels),
            "per_class": {
                row.label: {"precision": row.precision, "recall": row.recall, "images": row.support}
                for row in self.per_class()
            },
            "confusion_matrix": self.confusion.tolist(),
        }


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Plain-text table: first column left-aligned, the rest right-aligned, two spaces apart."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in [header, *rows]
    ]
    return "\n".join(lines)


def format_accuracy(report: ClassificationReport) -> str:
    return f"accuracy: {_percent(report.accuracy)} ({report.correct}/{report.total} images)"


def format_per_class_accuracy(report: ClassificationReport) -> str:
    """Per-class accuracy is each class's recall: the share of its images classified correctly."""
    rows = [[r.label, _percent(r.recall), str(r.support)] for r in report.per_class()]
    return format_table(["class", "accuracy", "images"], rows)


def format_precision_recall(report: ClassificationReport) -> str:
    rows = [
        [r.label, _percent(r.precision), _percent(r.recall), str(r.support)]
        for r in report.per_class()
    ]
    return format_table(["class", "precision", "recall", "images"], rows)


def format_confusion(report: ClassificationReport) -> str:
    rows = [
        [label, *(str(int(n)) for n in counts)]
        for label, counts in zip(report.labels, report.confusion, strict=True)
    ]
    return format_table(["true \\ predicted", *report.labels], rows)
