"""The training commands of ``resnet-serve``: ``finetune``, ``evaluate``, ``calibrate``, ``demo-data``.

``app.cli.main`` hands argv over here when the first word is one of ``COMMAND_NAMES``; this module holds
their argument parsing, kept apart so that the light commands never import torch. Each command is one ``_add_<command>`` function that declares its arguments and sets a handler, plus
one entry in ``COMMANDS``. Handlers turn arguments into one library call and print the result.
Expected failures (a bad bundle, dataset or option) print one ``error: ...`` line to stderr and exit
with status 2; progress and warnings from the library go to stderr, results to stdout.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

from app.model.bundle import MANIFEST_FILE, BundleError
from app.model.resnet import ARCHITECTURES
from app.training.calibration import DEFAULT_TARGET_RECALL, CalibrationFit
from app.training.config import WEIGHTS_DTYPES, FinetuneConfig, default_workers
from app.training.demo_data import CLASS_SETS, generate_dataset
from app.training.evaluate import calibrate_bundle, evaluate_bundle
from app.training.finetune import finetune, format_duration
from app.training.optim import OPTIMIZER_DEFAULTS
from app.training.recipe import FROM_PRETRAINED, FROM_SCRATCH
from app.training.scores import (
    format_accuracy,
    format_confusion,
    format_per_class_accuracy,
    format_precision_recall,
)

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130
Subparsers = argparse._SubParsersAction  # what add_subparsers returns; add_parser is called on it
# Failures a user can fix; DatasetError, CheckpointError and ImageDecodeError are ValueErrors.
EXPECTED_ERRORS = (BundleError, ValueError, OSError)


class _LogFormatter(logging.Formatter):
    """Info lines as they are; warnings and errors prefixed like ``warning: ...``."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.levelno >= logging.WARNING:
            return f"{record.levelname.lower()}: {message}"
        return message


@contextmanager
def _log_to_stderr() -> Iterator[None]:
    """Show the ``app`` loggers' info lines on stderr for the duration of one command."""
    logger = logging.getLogger("app")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_LogFormatter())
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


# ---- demo-data ---------------------------------------------------------------------------------


def _add_demo_data(commands: Subparsers) -> None:
    parser = commands.add_parser(
        "demo-data",
        help="generate the labelled shapes dataset used for the demo model",
        description="Write OUT/<class>/<class>_00000.jpg images of drawn shapes; "
        "the same seed gives the same files.",
    )
    parser.add_argument("out", type=Path, help="folder to write the class folders into")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    parser.add_argument(
        "--per-class", type=int, default=150, help="images per class (default: %(default)s)"
    )
    parser.add_argument(
        "--classes",
        type=_class_names,
        default=CLASS_SETS["demo"],
        help="comma-separated class names or sets: 'demo' (the demo model's 8 shapes, the "
        f"default), 'new' (6 shapes it never saw: {', '.join(CLASS_SETS['new'])}), 'clutter' "
        "(no shape: backgrounds and strokes)",
    )
    parser.set_defaults(handler=_demo_data)


def _class_names(value: str) -> tuple[str, ...]:
    """Comma-separated class names and set names: ``demo,clutter`` is the 8 demo shapes and clutter."""
    names = (name.strip() for name in value.split(","))
    return tuple(chosen for name in names for chosen in CLASS_SETS.get(name, (name,)))


def _demo_data(args: argparse.Namespace) -> int:
    counts = generate_dataset(
        args.out, seed=args.seed, per_class=args.per_class, classes=args.classes
    )
    print(f"wrote {sum(counts.values())} images of {len(counts)} classes to {args.out}")
    return 0


# ---- finetune ----------------------------------------------------------------------------------

_FINETUNE_DESCRIPTION = f"""\
Fine-tune a ResNet on DATA (one subfolder of images per class) and write a bundle to --out from the
epoch with the best validation accuracy, with training_curves.png and confusion_matrix.png beside it.

With pretrained weights the new head trains alone for --freeze-epochs epochs, then the backbone is
unfrozen at --backbone-lr-scale times the learning rate (--no-unfreeze keeps it frozen). From
--pretrained none everything trains at the full rate from the first step. The schedule is per-step:
linear warm-up, then cosine decay. Mixed precision is used on CUDA only. A checkpoint is written
after every epoch; --resume continues a run (pass the same arguments).

Options left unset follow a recipe chosen by the starting weights and sized by the data (the first
log line prints it): from scratch {FROM_SCRATCH.input_size} px, ~{FROM_SCRATCH.steps} steps of {FROM_SCRATCH.batch_size} images, lr {FROM_SCRATCH.adamw_lr:g}; from pretrained weights
their own input size, ~{FROM_PRETRAINED.steps} steps of {FROM_PRETRAINED.batch_size} images, lr {FROM_PRETRAINED.adamw_lr:g}, a fifth of the epochs head-only."""


def _config_defaults() -> dict[str, Any]:
    """FinetuneConfig's defaults, so the CLI and the library cannot drift apart."""
    defaults = {}
    for field in fields(FinetuneConfig):
        if field.default is not MISSING:
            defaults[field.name] = field.default
        elif field.default_factory is not MISSING:
            defaults[field.name] = field.default_factory()
    return defaults


def _add_finetune(commands: Subparsers) -> None:
    parser = commands.add_parser(
        "finetune",
        help="fine-tune a ResNet on an image folder and write a bundle",
        description=_FINETUNE_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("data", type=Path, help="training images: DATA/<class>/*.jpg|png|...")
    add("--out", type=Path, required=True, help="bundle folder to write, e.g. models/my-model")
    add(
        "--force",
        action="store_true",
        help="replace a bundle already at --out (it is swapped whole once the new one is written)",
    )
    add("--name", help="bundle name (default: the --out folder's name)")
    add("--val", type=Path, help="separate validation folder (default: split DATA)")
    add(
        "--val-fraction",
        type=float,
        help="share of each class held out when there is no --val (default: %(default)s)",
    )
    add("--arch", choices=list(ARCHITECTURES), help="architecture (default: %(default)s)")
    add(
        "--pretrained",
        metavar="none|imagenet|PATH",
        help="starting weights: 'none' (random; the default, no network needed), 'imagenet' "
        "(torchvision's weights, downloaded or from the torch hub cache), a torchvision .pth "
        "state dict, or one of our bundle folders of the same --arch",
    )
    add(
        "--input-size",
        type=int,
        help=f"square crop the model sees (default: {FROM_SCRATCH.input_size} from scratch, "
        "else the weights' own)",
    )
    add(
        "--resize-size",
        type=int,
        help="shorter side before the centre crop (default: the recipe's when --input-size is "
        "not given, else input size / 0.875)",
    )
    add(
        "--epochs",
        type=int,
        help=f"maximum epochs (default: enough for the recipe's {FROM_SCRATCH.steps} steps from "
        f"scratch or {FROM_PRETRAINED.steps} from pretrained weights)",
    )
    add(
        "--freeze-epochs",
        type=int,
        help="head-only epochs when pretrained (default: a fifth of the epochs)",
    )
    add(
        "--no-unfreeze",
        dest="unfreeze",
        action="store_false",
        help="keep a pretrained backbone frozen throughout",
    )
    add(
        "--backbone-lr-scale",
        type=float,
        help="backbone lr / head lr after unfreezing (default: %(default)s)",
    )
    add(
        "--optimizer",
        choices=list(OPTIMIZER_DEFAULTS),
        help="adamw, or sgd with Nesterov momentum 0.9 (default: %(default)s)",
    )
    add(
        "--lr",
        type=float,
        help=f"peak learning rate of the head (default: {FROM_SCRATCH.adamw_lr:g} from scratch "
        f"and {FROM_PRETRAINED.adamw_lr:g} from pretrained weights for adamw, 0.05 for sgd)",
    )
    add(
        "--weight-decay",
        type=float,
        help="(default: 0.05 for adamw, 1e-4 for sgd; none on biases and BatchNorm)",
    )
    add("--warmup-epochs", type=float, help="linear warm-up length (default: %(default)s)")
    add("--label-smoothing", type=float, help="(default: %(default)s)")
    add(
        "--batch-size",
        type=int,
        help=f"(default: {FROM_SCRATCH.batch_size} from scratch, {FROM_PRETRAINED.batch_size} "
        "from pretrained weights, smaller for a few dozen images)",
    )
    add(
        "--workers",
        type=int,
        help="DataLoader worker processes (default: min(4, CPU count) = %(default)s)",
    )
    add("--device", help="auto, cpu, cuda or cuda:N (default: %(default)s)")
    add("--seed", type=int, help="seeds Python, NumPy, torch and the split (default: %(default)s)")
    add(
        "--patience",
        type=int,
        help="stop after this many epochs without a better val accuracy; 0: never "
        "(default: a third of the epochs, at least 5)",
    )
    add(
        "--checkpoint-dir",
        type=Path,
        help="where checkpoint.pt goes (default: the --resume checkpoint's folder, else runs/<name>)",
    )
    add("--resume", type=Path, metavar="CHECKPOINT", help="continue after the checkpoint's epoch")
    add(
        "--weights-dtype",
        choices=WEIGHTS_DTYPES,
        help="bundle storage precision (default: %(default)s)",
    )
    add("--no-progress", dest="progress", action="store_false", help="no per-batch progress bar")
    parser.set_defaults(**_config_defaults(), handler=_finetune)


def _finetune(args: argparse.Namespace) -> int:
    config = FinetuneConfig(
        **{field.name: getattr(args, field.name) for field in fields(FinetuneConfig)}
    )
    result = finetune(config)
    report = result.report
    print(
        f"best validation accuracy: {100 * result.best_accuracy:.2f}% "
        f"(epoch {result.best_epoch} of {result.epochs_run})"
    )
    print("per-class validation accuracy:")
    print(format_per_class_accuracy(report))
    print("confusion matrix (rows: true class, columns: predicted class):")
    print(format_confusion(report))
    _print_calibration(result.calibration)
    print(f"checkpoint (last and best epoch, for --resume): {result.checkpoint}")
    print(
        f"done in {format_duration(result.seconds)}: bundle {result.bundle_dir}, validation "
        f"accuracy {100 * result.best_accuracy:.2f}%, ECE {result.calibration.ece_after:.4f} "
        "(calibrated)"
    )
    return 0


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


# ---- evaluate ----------------------------------------------------------------------------------


def _add_scoring_arguments(parser: argparse.ArgumentParser) -> None:
    """BUNDLE, a labelled FOLDER and how to run the model over it: shared by evaluate and calibrate."""
    parser.add_argument("bundle", type=Path, help="bundle folder (model.json + model.safetensors)")
    parser.add_argument("folder", type=Path, help="labelled images: FOLDER/<class>/*.jpg|png|...")
    parser.add_argument("--batch-size", type=int, default=64, help="(default: %(default)s)")
    parser.add_argument(
        "--device", default="auto", help="auto, cpu, cuda or cuda:N (default: %(default)s)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=default_workers(),
        help="DataLoader worker processes (default: %(default)s)",
    )
    parser.add_argument(
        "--no-jpeg-draft",
        dest="jpeg_draft",
        action="store_false",
        help="decode JPEGs at full size (the service's RESNET_SERVE_JPEG_DRAFT=false)",
    )


def _add_evaluate(commands: Subparsers) -> None:
    parser = commands.add_parser(
        "evaluate",
        help="score a bundle on a labelled image folder",
        description="Classify FOLDER/<class>/ images with BUNDLE, preprocessed as serving does, "
        "and print accuracy, calibration error, per-class precision and recall and the confusion "
        "matrix. FOLDER's classes must be among the bundle's labels.",
    )
    _add_scoring_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    parser.add_argument(
        "--ood",
        type=Path,
        metavar="OOD_FOLDER",
        help="images of none of the classes (any layout): report how well the scores reject them",
    )
    parser.set_defaults(handler=_evaluate)


def _scoring_options(args: argparse.Namespace) -> dict[str, Any]:
    """What ``_add_scoring_arguments`` parsed, as keyword arguments of evaluate and calibrate."""
    return {
        "batch_size": args.batch_size,
        "device": args.device,
        "workers": args.workers,
        "jpeg_draft": args.jpeg_draft,
    }


def _evaluate(args: argparse.Namespace) -> int:
    result = evaluate_bundle(
        args.bundle,
        args.folder,
        ood_folder=args.ood,
        **_scoring_options(args),
    )
    if args.json:
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
        return 0
    print(f"bundle: {result.name}, folder: {result.folder}")
    print(format_accuracy(result.report))
    print(
        f"calibration error (ECE) of the served scores: {result.ece:.4f} (temperature {result.temperature:.3f})"
    )
    print("per-class precision and recall:")
    print(format_precision_recall(result.report))
    print("confusion matrix (rows: true class, columns: predicted class):")
    print(format_confusion(result.report))
    if result.ood is not None:
        ood = result.ood
        print(f"out-of-distribution: {ood.images} images in {ood.folder}")
        print(f"  AUROC in-class vs OOD, max softmax probability: {ood.msp_auroc:.4f}")
        print(f"  AUROC in-class vs OOD, energy score: {ood.energy_auroc:.4f}")
        print(
            f"  abstain rate at threshold {ood.threshold:.4f}: "
            f"{100 * ood.abstain_rate_ood:.1f}% of OOD, "
            f"{100 * ood.abstain_rate_in_class:.1f}% of in-class"
        )
    return 0


# ---- calibrate ---------------------------------------------------------------------------------


def _add_calibrate(commands: Subparsers) -> None:
    parser = commands.add_parser(
        "calibrate",
        help="fit a bundle's softmax temperature and abstain threshold",
        description="Classify held-out FOLDER/<class>/ images with BUNDLE, fit the temperature that "
        "calibrates its scores and the abstain threshold that keeps --target-recall of its correct "
        "answers, and store both in BUNDLE/model.json (the weights are not touched).",
    )
    _add_scoring_arguments(parser)
    parser.add_argument(
        "--target-recall",
        type=float,
        default=DEFAULT_TARGET_RECALL,
        help="share of correct in-class answers kept above the threshold (default: %(default)s)",
    )
    parser.add_argument(
        "--fitted-on",
        metavar="TEXT",
        help="how model.json describes the calibration images (default: the FOLDER path)",
    )
    parser.set_defaults(handler=_calibrate)


def _calibrate(args: argparse.Namespace) -> int:
    fit = calibrate_bundle(
        args.bundle,
        args.folder,
        target_recall=args.target_recall,
        fitted_on=args.fitted_on,
        **_scoring_options(args),
    )
    print(f"accuracy: {100 * fit.accuracy:.2f}%")
    _print_calibration(fit)
    print(f"wrote {args.bundle / MANIFEST_FILE}")
    return 0


# ---- entry point -------------------------------------------------------------------------------

COMMANDS: tuple[Callable[[Subparsers], None], ...] = (
    _add_finetune,
    _add_evaluate,
    _add_calibrate,
    _add_demo_data,
)
COMMAND_NAMES = ("finetune", "evaluate", "calibrate", "demo-data")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="resnet-serve", description="Fine-tune and evaluate ResNet image classifiers."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_command in COMMANDS:
        add_command(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status (argparse itself exits 2 on usage errors)."""
    args = build_parser().parse_args(argv)
    with _log_to_stderr():
        try:
            return args.handler(args)
        except EXPECTED_ERRORS as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_ERROR
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
