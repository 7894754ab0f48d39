"""The training commands of ``resnet-serve``: ``finetune``, ``evaluate``, ``calibrate``, ``demo-data``.

Their options take choices and defaults from the training library, which loads torch, so each is
registered with a ``configure`` function that adds them only when that command runs. Handlers turn
the arguments into one library call and print its result with ``app.cli.reports``; failures the
user can fix are one ``error: ...`` line and status 2 (``library_command``).
"""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path
from typing import Any

from app.cli.commands import Commands, library_command

_FINETUNE_DESCRIPTION = """\
Fine-tune a ResNet on DATA (one subfolder of images per class) and write a bundle to --out from the
epoch with the best validation accuracy, with training_curves.png and confusion_matrix.png beside it.

With pretrained weights the new head trains alone for --freeze-epochs epochs, then the backbone is
unfrozen at --backbone-lr-scale times the learning rate (--no-unfreeze keeps it frozen). From
--pretrained none everything trains at the full rate from the first step. The schedule is per-step:
linear warm-up, then cosine decay. Mixed precision is used on CUDA only. A checkpoint is written
after every epoch; --resume continues a run (pass the same arguments).

Options left unset follow a recipe chosen by the starting weights and sized by the data (the first
log line prints it): from scratch {scratch.input_size} px, ~{scratch.steps} steps of {scratch.batch_size} images, lr {scratch.adamw_lr:g}; from pretrained weights
their own input size, ~{pretrained.steps} steps of {pretrained.batch_size} images, lr {pretrained.adamw_lr:g}, a fifth of the epochs head-only."""


def register(commands: Commands) -> None:
    commands.add_parser(
        "finetune",
        help="fine-tune a ResNet on an image folder and write a bundle",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        configure=_finetune_options,
    )
    commands.add_parser(
        "evaluate",
        help="score a bundle on a labelled image folder",
        description="Classify FOLDER/<class>/ images with BUNDLE, preprocessed as serving does, "
        "and print accuracy, calibration error, per-class precision and recall and the confusion "
        "matrix. FOLDER's classes must be among the bundle's labels.",
        configure=_evaluate_options,
    )
    commands.add_parser(
        "calibrate",
        help="fit a bundle's softmax temperature and abstain threshold",
        description="Classify held-out FOLDER/<class>/ images with BUNDLE, fit the temperature that "
        "calibrates its scores and the abstain threshold that keeps --target-recall of its correct "
        "answers, and store both in BUNDLE/model.json (the weights are not touched).",
        configure=_calibrate_options,
    )
    commands.add_parser(
        "demo-data",
        help="generate the labelled shapes dataset used for the demo model",
        description="Write OUT/<class>/<class>_00000.jpg images of drawn shapes; "
        "the same seed gives the same files.",
        configure=_demo_data_options,
    )


# ---- finetune ----------------------------------------------------------------------------------


def _finetune_options(parser: argparse.ArgumentParser) -> None:
    from app.model.resnet import ARCHITECTURES
    from app.training.config import WEIGHTS_DTYPES, FinetuneConfig
    from app.training.optim import OPTIMIZER_DEFAULTS
    from app.training.recipe import FROM_PRETRAINED, FROM_SCRATCH

    parser.description = _FINETUNE_DESCRIPTION.format(
        scratch=FROM_SCRATCH, pretrained=FROM_PRETRAINED
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
    add(
        "--abstain-labels",
        type=_label_list,
        metavar="LABEL[,LABEL...]",
        help="classes that mean 'none of these' (e.g. clutter): the bundle records them, and "
        "serving answers them abstained unless RESNET_SERVE_ABSTAIN_LABELS says otherwise",
    )
    # FinetuneConfig's own defaults, so the CLI and the library cannot drift apart; DATA and --out
    # are required, so their placeholders here are never used.
    parser.set_defaults(**vars(FinetuneConfig(data=Path(), out=Path("out"))), handler=_finetune)


def _label_list(value: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in value.split(",") if name.strip())


@library_command
def _finetune(args: argparse.Namespace) -> int:
    from app.cli.reports import print_finetune
    from app.training.config import FinetuneConfig
    from app.training.finetune import finetune

    options = {field.name: getattr(args, field.name) for field in fields(FinetuneConfig)}
    print_finetune(finetune(FinetuneConfig(**options)))
    return 0


# ---- evaluate and calibrate --------------------------------------------------------------------


def _scoring_options(parser: argparse.ArgumentParser) -> None:
    """BUNDLE, a labelled FOLDER and how to run the model over it: shared by evaluate and calibrate."""
    from app.training.config import default_workers

    add = parser.add_argument
    add("bundle", type=Path, help="bundle folder (model.json + model.safetensors)")
    add("folder", type=Path, help="labelled images: FOLDER/<class>/*.jpg|png|...")
    add("--batch-size", type=int, default=64, help="(default: %(default)s)")
    add("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: %(default)s)")
    add(
        "--workers",
        type=int,
        default=default_workers(),
        help="DataLoader worker processes (default: %(default)s)",
    )
    add(
        "--no-jpeg-draft",
        dest="jpeg_draft",
        action="store_false",
        help="decode JPEGs at full size (the service's RESNET_SERVE_JPEG_DRAFT=false)",
    )


def _scoring_arguments(args: argparse.Namespace) -> dict[str, Any]:
    """What ``_scoring_options`` parsed, as keyword arguments of evaluate and calibrate."""
    return {name: getattr(args, name) for name in ("batch_size", "device", "workers", "jpeg_draft")}


def _evaluate_options(parser: argparse.ArgumentParser) -> None:
    _scoring_options(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    parser.add_argument(
        "--ood",
        type=Path,
        metavar="OOD_FOLDER",
        help="images of none of the classes (any layout): report how well the scores reject them",
    )
    parser.set_defaults(handler=_evaluate)


@library_command
def _evaluate(args: argparse.Namespace) -> int:
    from app.cli.reports import print_evaluate
    from app.training.evaluate import evaluate_bundle

    result = evaluate_bundle(
        args.bundle, args.folder, ood_folder=args.ood, **_scoring_arguments(args)
    )
    print_evaluate(result, args.json)
    return 0


def _calibrate_options(parser: argparse.ArgumentParser) -> None:
    from app.training.calibration import DEFAULT_TARGET_RECALL

    _scoring_options(parser)
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


@library_command
def _calibrate(args: argparse.Namespace) -> int:
    from app.cli.reports import print_calibrate
    from app.training.evaluate import calibrate_bundle

    fit = calibrate_bundle(
        args.bundle,
        args.folder,
        target_recall=args.target_recall,
        fitted_on=args.fitted_on,
        **_scoring_arguments(args),
    )
    print_calibrate(fit, args.bundle)
    return 0


# ---- demo-data ---------------------------------------------------------------------------------


def _demo_data_options(parser: argparse.ArgumentParser) -> None:
    from app.training.demo_data import CLASS_SETS

    def class_names(value: str) -> tuple[str, ...]:
        """Class names and set names, comma-separated: ``demo,clutter`` is the 8 shapes and clutter."""
        names = (name.strip() for name in value.split(","))
        return tuple(chosen for name in names for chosen in CLASS_SETS.get(name, (name,)))

    add = parser.add_argument
    add("out", type=Path, help="folder to write the class folders into")
    add("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    add("--per-class", type=int, default=150, help="images per class (default: %(default)s)")
    add(
        "--classes",
        type=class_names,
        default=CLASS_SETS["demo"],
        help="comma-separated class names or sets: 'demo' (the demo model's 8 shapes, the "
        f"default), 'new' (6 shapes it never saw: {', '.join(CLASS_SETS['new'])}), 'clutter' "
        "(no shape: backgrounds with a few strokes, gradients, noise, photo-like textures)",
    )
    parser.set_defaults(handler=_demo_data)


@library_command
def _demo_data(args: argparse.Namespace) -> int:
    from app.training.demo_data import generate_dataset

    counts = generate_dataset(
        args.out, seed=args.seed, per_class=args.per_class, classes=args.classes
    )
    print(f"wrote {sum(counts.values())} images of {len(counts)} classes to {args.out}")
    return 0
