"""Score a model on a labelled image folder: the validation pass of training and ``resnet-serve evaluate``.

Evaluation preprocesses with the bundle's own ``eval_transform``, exactly as serving does, so the
accuracy printed here is the accuracy the service delivers on such images.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from app.devices import resolve_device
from app.model.bundle import load_bundle
from app.preprocessing import eval_transform
from app.training.data import ImageDataset, make_loader, scan_image_folder
from app.training.metrics import ClassificationReport, confusion_matrix
from app.training.runtime import Precision


@dataclass(frozen=True)
class EvalResult:
    """Mean cross-entropy (no label smoothing) and the classification report."""

    loss: float
    report: ClassificationReport


def evaluate_model(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    labels: Sequence[str],
    precision: Precision,
) -> EvalResult:
    """Run ``model`` in eval mode over ``batches`` of (images, class indices into ``labels``)."""
    model.eval()
    matrix = torch.zeros(len(labels), len(labels), dtype=torch.int64)
    loss_sum = 0.0
    with torch.inference_mode():
        for images, targets in batches:
            images = images.to(precision.device, non_blocking=True)
            targets = targets.to(precision.device, non_blocking=True)
            with precision.autocast():
                logits = model(images)
            loss_sum += F.cross_entropy(logits.float(), targets, reduction="sum").item()
            matrix += confusion_matrix(targets, logits.argmax(dim=1), len(labels))
    report = ClassificationReport(tuple(labels), matrix)
    return EvalResult(loss=loss_sum / max(report.total, 1), report=report)


@dataclass(frozen=True)
class BundleEvaluation:
    """The result of ``evaluate_bundle``: which model, on what, and how well."""

    name: str
    folder: Path
    report: ClassificationReport
    skipped: int


def evaluate_bundle(
    bundle_dir: Path | str,
    folder: Path | str,
    *,
    batch_size: int = 64,
    device: str = "auto",
    workers: int = 0,
    jpeg_draft: bool = True,
) -> BundleEvaluation:
    """Evaluate a bundle on ``folder/<class>/`` images; the folder's classes must be bundle labels.

    ``jpeg_draft`` decodes JPEGs as the service does by default (``RESNET_SERVE_JPEG_DRAFT``).
    """
    target = resolve_device(device)
    bundle = load_bundle(bundle_dir, target)
    labels = bundle.manifest.labels
    data = scan_image_folder(folder, classes=labels)
    spec = bundle.manifest.preprocessing
    draft_size = spec.resize_size if jpeg_draft else None
    dataset = ImageDataset(data.samples, eval_transform(spec), draft_size)
    loader = make_loader(dataset, batch_size=batch_size, workers=workers, device=target)
    result = evaluate_model(bundle.model, loader, labels, Precision.for_device(target))
    return BundleEvaluation(
        name=bundle.manifest.name,
        folder=Path(folder),
        report=result.report,
        skipped=len(data.skipped),
    )
