"""The settings of one fine-tuning run, checked on construction, with their derived defaults.

The CLI builds a ``FinetuneConfig`` from argv; tests build one directly. Validation lives here, not
in argparse, so both paths refuse the same bad values with the same message.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from app.model.preprocessing import PreprocessingSpec
from app.model.resnet import ARCHITECTURES
from app.training.checkpoint import CHECKPOINT_FILE
from app.training.optim import OPTIMIZER_DEFAULTS, OptimizerName

# How the bundle stores its weights, in app.model.devices' names; serving casts them to its precision.
WeightsDtype = Literal["fp16", "fp32"]
WEIGHTS_DTYPES: tuple[WeightsDtype, ...] = ("fp16", "fp32")
RESIZE_RATIO = 0.875  # the usual ImageNet crop: 224 of 256
# Options a recipe fills when unset, recorded in the checkpoint so that --resume keeps them.
RECORDED_SETTINGS = ("epochs", "batch_size", "lr", "freeze_epochs", "patience")


def default_workers() -> int:
    """DataLoader processes: enough to keep a GPU fed, never more than the machine's cores."""
    return min(4, os.cpu_count() or 1)


@dataclass(frozen=True)
class FinetuneConfig:
    """Every knob of one fine-tuning run; ``None`` means "derive a sensible value": the recipe
    (``app.training.recipe``) fills epochs, batch size, learning rate and sizes, the properties the
    rest."""

    data: Path
    out: Path
    force: bool = False
    val: Path | None = None
    val_fraction: float = 0.2
    name: str | None = None
    arch: str = "resnet18"
    pretrained: str = "none"
    input_size: int | None = None
    resize_size: int | None = None
    epochs: int | None = None
    freeze_epochs: int | None = None
    unfreeze: bool = True
    backbone_lr_scale: float = 0.1
    optimizer: OptimizerName = "adamw"
    lr: float | None = None
    weight_decay: float | None = None
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    batch_size: int | None = None
    workers: int = field(default_factory=default_workers)
    device: str = "auto"
    seed: int = 0
    patience: int | None = None
    checkpoint_dir: Path | None = None
    resume: Path | None = None
    weights_dtype: WeightsDtype = "fp32"
    progress: bool = True
    # Classes that mean "none of these" (a clutter class): the bundle's answers of them abstain.
    abstain_labels: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        checks = [
            (self.arch in ARCHITECTURES, f"unknown arch {self.arch!r}"),
            (self.optimizer in OPTIMIZER_DEFAULTS, f"unknown optimizer {self.optimizer!r}"),
            (
                self.weights_dtype in WEIGHTS_DTYPES,
                f"unknown weights dtype {self.weights_dtype!r}; use fp16 or fp32",
            ),
            (
                self.input_size is None or 16 <= self.input_size <= 1024,
                "input size must be between 16 and 1024",
            ),
            (
                self.resize_size is None or (self.input_size or 16) <= self.resize_size <= 2048,
                "resize size must be at least the input size and at most 2048",
            ),
            (self.epochs is None or self.epochs >= 1, "epochs must be at least 1"),
            (self.freeze_epochs is None or self.freeze_epochs >= 0, "freeze epochs must be >= 0"),
            (self.backbone_lr_scale > 0, "backbone lr scale must be positive"),
            (self.lr is None or self.lr > 0, "learning rate must be positive"),
            (self.weight_decay is None or self.weight_decay >= 0, "weight decay must be >= 0"),
            (self.warmup_epochs >= 0, "warmup epochs must be >= 0"),
            (0 <= self.label_smoothing < 1, "label smoothing must be in [0, 1)"),
            (self.batch_size is None or self.batch_size >= 1, "batch size must be at least 1"),
            (self.workers >= 0, "workers must be >= 0"),
            (
                self.patience is None or self.patience >= 0,
                "patience must be >= 0 (0 turns early stopping off)",
            ),
            (self.bundle_name != "", "a bundle name is needed: pass --name"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    @property
    def bundle_name(self) -> str:
        return self.name or self.out.name

    @property
    def checkpoint_path(self) -> Path:
        """Outside the bundle: ``--checkpoint-dir``, else the folder of the checkpoint being resumed,
        else ``runs/<name>/`` (``runs/`` is git-ignored)."""
        if self.checkpoint_dir is not None:
            return self.checkpoint_dir / CHECKPOINT_FILE
        if self.resume is not None:
            return self.resume.parent / CHECKPOINT_FILE
        return Path("runs") / self.bundle_name / CHECKPOINT_FILE

    def preprocessing(self, mean: Any, std: Any, interpolation: str) -> PreprocessingSpec:
        """The spec for this run's sizes and the starting weights' normalisation.

        Without ``resize_size`` the crop keeps the usual ImageNet ratio (224 of 256).
        """
        resize = self.resize_size or round(self.input_size / RESIZE_RATIO)
        return PreprocessingSpec(
            input_size=self.input_size,
            resize_size=resize,
            interpolation=interpolation,
            mean=mean,
            std=std,
        )

    def recorded_settings(self) -> dict[str, Any]:
        """The filled-in values a checkpoint keeps for ``--resume`` (see ``with_recorded``)."""
        return {name: getattr(self, name) for name in RECORDED_SETTINGS}

    def with_recorded(self, recorded: dict[str, Any]) -> FinetuneConfig:
        """This config with every recorded option the user did not give taken from ``recorded``:
        a resumed run keeps its batch, learning rate, freezing and patience even when a larger
        ``--epochs`` is passed to train further."""
        unset = {name: recorded[name] for name in RECORDED_SETTINGS if getattr(self, name) is None}
        return dataclasses.replace(self, **unset)

    def hyperparameters(self, backbone_pretrained: bool) -> dict[str, Any]:
        """What the bundle's provenance records about how it was trained.

        The freezing settings are left out when there was no pretrained backbone to freeze.
        """
        lr, weight_decay = self.optimizer_settings()
        settings: dict[str, Any] = {
            "epochs": self.epochs,
            "patience": self.patience,
            "optimizer": self.optimizer,
            "lr": lr,
            "weight_decay": weight_decay,
            "batch_size": self.batch_size,
            "label_smoothing": self.label_smoothing,
            "warmup_epochs": self.warmup_epochs,
            "seed": self.seed,
        }
        if backbone_pretrained:
            settings |= {
                "freeze_epochs": self.freeze_epochs,
                "unfreeze": self.unfreeze,
                "backbone_lr_scale": self.backbone_lr_scale,
            }
        return settings

    def optimizer_settings(self) -> tuple[float, float]:
        default_lr, default_decay = OPTIMIZER_DEFAULTS[self.optimizer]
        return (
            default_lr if self.lr is None else self.lr,
            default_decay if self.weight_decay is None else self.weight_decay,
        )
