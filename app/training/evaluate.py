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

from app.model.bundle import Bundle, load_bundle, write_manifest
from app.model.devices import resolve_device
from app.model.preprocessing import eval_transform
from app.training.calibration import (
    DEFAULT_TARGET_RECALL,
    CalibrationFit,
    auroc,
    energy_score,
    expected_calibration_error,
    fit_calibration,
)
from app.training.data import (
    ImageDataset,
    Sample,
    make_loader,
    scan_image_folder,
    scan_unlabelled_folder,
)
from app.training.runtime import Precision
from app.training.scores import ClassificationReport, confusion_matrix


@dataclass(frozen=True)
class EvalResult:
    """Mean cross-entropy (no label smoothing), the classification report and the raw outputs.

    ``logits`` (float32, CPU) and ``targets`` are kept, in order, for calibration.
    """

    loss: float
    report: ClassificationReport
    logits: torch.Tensor
    targets: torch.Tensor


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
    all_logits: list[torch.Tensor] = []
    all_targets: list[torch.Tensor] = []
    with torch.inference_mode():
        for images, targets in batches:
            images = images.to(precision.device, non_blocking=True)
            targets = targets.to(precision.device, non_blocking=True)
            with precision.autocast():
                logits = model(images)
            loss_sum += F.cross_entropy(logits.float(), targets, reduction="sum").item()
            matrix += confusion_matrix(targets, logits.argmax(dim=1), len(labels))
            all_logits.append(logits.float().cpu())
            all_targets.append(targets.cpu())
    report = ClassificationReport(tuple(labels), matrix)
    return EvalResult(
        loss=loss_sum / max(report.total, 1),
        report=report,
        logits=torch.cat(all_logits) if all_logits else torch.zeros(0, len(labels)),
        targets=torch.cat(all_targets) if all_targets else torch.zeros(0, dtype=torch.int64),
    )


@dataclass(frozen=True)
class OodReport:
    """How well the served scores tell in-class images from images of none of the classes.

    AUROCs treat in-class as positive: of max softmax probability (higher for in-class) and of the
    negated energy score. With ``abstain_labels`` (a "none of these" class) both look at the other
    labels only: the top score among them, the energy of their logits. An image abstains as served:
    its top score is below the bundle's threshold (0 when it has none) or its top label abstains.
    """

    folder: Path
    images: int
    msp_auroc: float
    energy_auroc: float
    threshold: float
    abstain_rate_ood: float
    abstain_rate_in_class: float

    def to_dict(self) -> dict[str, float | int | str]:
        return {
            "folder": str(self.folder),
            "images": self.images,
            "msp_auroc": self.msp_auroc,
            "energy_auroc": self.energy_auroc,
            "abstain_threshold": self.threshold,
            "abstain_rate_ood": self.abstain_rate_ood,
            "abstain_rate_in_class": self.abstain_rate_in_class,
        }


@dataclass(frozen=True)
class BundleEvaluation:
    """The result of ``evaluate_bundle``: which model, on what, and how well.

    ``ece`` is the calibration error of the probabilities the service returns (with the bundle's
    temperature); ``ood`` is filled when an out-of-distribution folder was given.
    """

    name: str
    folder: Path
    report: ClassificationReport
    skipped: int
    ece: float
    temperature: float
    ood: OodReport | None = None


@dataclass(frozen=True)
class _Loaded:
    bundle: Bundle
    device: torch.device
    draft_size: int | None


def _load(bundle_dir: Path | str, device: str, jpeg_draft: bool) -> _Loaded:
    target = resolve_device(device)
    bundle = load_bundle(bundle_dir, target)
    spec = bundle.manifest.preprocessing
    return _Loaded(bundle, target, spec.resize_size if jpeg_draft else None)


def _evaluate_samples(
    loaded: _Loaded, samples: Sequence[Sample], batch_size: int, workers: int
) -> EvalResult:
    bundle = loaded.bundle
    transform = eval_transform(bundle.manifest.preprocessing)
    dataset = ImageDataset(samples, transform, loaded.draft_size)
    loader = make_loader(dataset, batch_size=batch_size, workers=workers, device=loaded.device)
    precision = Precision.for_device(loaded.device)
    return evaluate_model(bundle.model, loader, bundle.manifest.labels, precision)


def _ood_report(
    loaded: _Loaded,
    folder: Path,
    in_class: EvalResult,
    batch_size: int,
    workers: int,
) -> OodReport:
    manifest = loaded.bundle.manifest
    temperature, threshold = manifest.temperature, manifest.abstain_threshold
    paths = scan_unlabelled_folder(folder)
    # Label 0 is a placeholder: only the logits of these images are used.
    ood = _evaluate_samples(loaded, [(path, 0) for path in paths], batch_size, workers)
    rejected = torch.tensor([label in manifest.abstain_labels for label in manifest.labels])

    def scores(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Top score among the answering labels, their negated energy, and whether served abstains."""
        probabilities = torch.softmax(logits / temperature, dim=1)
        top, index = probabilities.max(dim=1)
        answering = probabilities[:, ~rejected].max(dim=1).values
        energy = energy_score(logits[:, ~rejected], temperature)
        return answering, -energy, (top < threshold) | rejected[index]

    msp_in, energy_in, abstained_in = scores(in_class.logits)
    msp_ood, energy_ood, abstained_ood = scores(ood.logits)
    return OodReport(
        folder=folder,
        images=len(paths),
        msp_auroc=auroc(msp_in, msp_ood),
        energy_auroc=auroc(energy_in, energy_ood),
        threshold=threshold,
        abstain_rate_ood=float(abstained_ood.float().mean()),
        abstain_rate_in_class=float(abstained_in.float().mean()),
    )


def evaluate_bundle(
    bundle_dir: Path | str,
    folder: Path | str,
    *,
    batch_size: int = 64,
    device: str = "auto",
    workers: int = 0,
    jpeg_draft: bool = True,
    ood_folder: Path | str | None = None,
) -> BundleEvaluation:
    """Evaluate a bundle on ``folder/<class>/`` images; the folder's classes must be bundle labels.

    ``jpeg_draft`` decodes JPEGs as the service does by default (``RESNET_SERVE_JPEG_DRAFT``).
    ``ood_folder`` holds images of none of the classes (any layout) to score abstention against.
    """
    loaded = _load(bundle_dir, device, jpeg_draft)
    manifest = loaded.bundle.manifest
    data = scan_image_folder(folder, classes=manifest.labels)
    result = _evaluate_samples(loaded, data.samples, batch_size, workers)
    temperature = manifest.temperature
    served = torch.softmax(result.logits / temperature, dim=1)
    ood = None
    if ood_folder is not None:
        ood = _ood_report(loaded, Path(ood_folder), result, batch_size, workers)
    return BundleEvaluation(
        name=manifest.name,
        folder=Path(folder),
        report=result.report,
        skipped=len(data.skipped),
        ece=expected_calibration_error(served, result.targets),
        temperature=temperature,
        ood=ood,
    )


def calibrate_bundle(
    bundle_dir: Path | str,
    folder: Path | str,
    *,
    target_recall: float = DEFAULT_TARGET_RECALL,
    fitted_on: str | None = None,
    batch_size: int = 64,
    device: str = "auto",
    workers: int = 0,
    jpeg_draft: bool = True,
) -> CalibrationFit:
    """Fit temperature and abstain threshold on labelled ``folder`` and store them in the bundle.

    Only ``model.json`` is rewritten (atomically); the weights and their sha256 are untouched.
    ``fitted_on`` describes the images in the manifest (default: the folder's path).
    """
    loaded = _load(bundle_dir, device, jpeg_draft)
    manifest = loaded.bundle.manifest
    data = scan_image_folder(folder, classes=manifest.labels)
    result = _evaluate_samples(loaded, data.samples, batch_size, workers)
    description = fitted_on or str(folder)
    fit = fit_calibration(result.logits, result.targets, description, target_recall)
    write_manifest(bundle_dir, manifest.model_copy(update={"calibration": fit.calibration}))
    return fit
