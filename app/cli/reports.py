"""What the training commands print on stdout: a fine-tune's, an evaluation's and a calibration's
results, each section written once for every command that shows it.

The handlers in ``app.cli.training`` import this module when they run: it loads torch.
"""

from __future__ import annotations

import json
from pathlib import Path

from app.model.bundle import MANIFEST_FILE
from app.training.calibration import CalibrationFit
from app.training.evaluate import BundleEvaluation
from app.training.finetune import FinetuneResult, format_duration
from app.training.scores import (
    ClassificationReport,
    format_accuracy,
    format_confusion,
    format_per_class_accuracy,
    format_precision_recall,
)


def print_finetune(result: FinetuneResult) -> None:
    print(
        f"best validation accuracy: {100 * result.best_accuracy:.2f}% "
        f"(epoch {result.best_epoch} of {result.epochs_run})"
    )
    print("per-class validation accuracy:")
    print(format_per_class_accuracy(result.report))
    _print_confusion(result.report)
    _print_calibration(result.calibration)
    print(f"checkpoint (last and best epoch, for --resume): {result.checkpoint}")
    print(
        f"done in {format_duration(result.seconds)}: bundle {result.bundle_dir}, validation "
        f"accuracy {100 * result.best_accuracy:.2f}%, ECE {result.calibration.ece_after:.4f} "
        "(calibrated)"
    )


def print_evaluate(result: BundleEvaluation, as_json: bool) -> None:
    if as_json:
        summary = {
            "bundle": result.name,
            "folder": str(result.folder),
            "skipped": result.skipped,
            "ece": result.ece,
            "temperature": result.temperature,
        }
        if result.ood is not None:
            summary["ood"] = result.ood.to_dict()
        print(json.dumps(summary | result.report.to_dict(), indent=2))
        return
    print(f"bundle: {result.name}, folder: {result.folder}")
    print(format_accuracy(result.report))
    print(
        f"calibration error (ECE) of the served scores: {result.ece:.4f} (temperature {result.temperature:.3f})"
    )
    print("per-class precision and recall:")
    print(format_precision_recall(result.report))
    _print_confusion(result.report)
    if result.ood is not None:
        ood = result.ood
        print(f"out-of-distribution: {ood.images} images in {ood.folder}")
        print(f"  AUROC in-class vs OOD, max softmax probability: {ood.msp_auroc:.4f}")
        print(f"  AUROC in-class vs OOD, energy score: {ood.energy_auroc:.4f}")
        print(
            f"  abstain rate (top score below {ood.threshold:.4f} or an abstain label): "
            f"{100 * ood.abstain_rate_ood:.1f}% of OOD, "
            f"{100 * ood.abstain_rate_in_class:.1f}% of in-class"
        )


def print_calibrate(fit: CalibrationFit, bundle: Path) -> None:
    print(f"accuracy: {100 * fit.accuracy:.2f}%")
    _print_calibration(fit)
    print(f"wrote {bundle / MANIFEST_FILE}")


def _print_confusion(report: ClassificationReport) -> None:
    print("confusion matrix (rows: true class, columns: predicted class):")
    print(format_confusion(report))


def _print_calibration(fit: CalibrationFit) -> None:
    calibration = fit.calibration
    print(
        f"calibration on {fit.images} images: temperature {calibration.temperature:.3f}, "
        f"ECE {fit.ece_before:.4f} before, {fit.ece_after:.4f} after"
    )
    print(
        f"abstain threshold: {calibration.abstain_threshold:.4f} "
        f"(keeps {100 * (calibration.target_recall or 0):g}% of correct in-class answers)"
    )
