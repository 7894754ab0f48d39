"""Training checkpoints: everything needed to continue a fine-tune after the last finished epoch.

Saved with ``torch.save`` and read back with ``weights_only=True``, so a checkpoint holds only
tensors and plain containers and loading one never runs pickled code. The best epoch's weights
travel inside the checkpoint, so a resumed run still writes the bundle from the best epoch.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_VERSION = 2  # 2: records the run's settings (``settings``) for --resume
CHECKPOINT_FILE = "checkpoint.pt"


class CheckpointError(ValueError):
    """A checkpoint file is unreadable or does not fit the run that tries to resume from it."""


@dataclass
class TrainingCheckpoint:
    """The state after ``epoch`` (1-based) finished; ``history`` holds one dict per epoch.

    ``trainer`` is ``Trainer.state_dict()``: optimiser, learning-rate schedule and loss scaler.
    ``settings`` are the run's own values of the options a recipe may fill (``RECORDED_SETTINGS``),
    so that a resumed run keeps them instead of deriving new ones.
    """

    epoch: int
    arch: str
    classes: list[str]
    pretrained: str
    backbone_pretrained: bool
    preprocessing: dict[str, Any]
    settings: dict[str, Any] = field(default_factory=dict)
    model: dict[str, torch.Tensor] = field(default_factory=dict)
    best_model: dict[str, torch.Tensor] = field(default_factory=dict)
    trainer: dict[str, dict[str, Any]] = field(default_factory=dict)
    best_epoch: int = 0
    best_accuracy: float = -1.0
    best_loss: float = float("inf")
    stale_epochs: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    version: int = CHECKPOINT_VERSION

    def save(self, path: Path) -> None:
        """Write atomically: a crash while saving leaves the previous checkpoint intact."""
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        torch.save({f.name: getattr(self, f.name) for f in fields(self)}, partial)
        os.replace(partial, path)

    @classmethod
    def load(cls, path: Path) -> TrainingCheckpoint:
        try:
            raw = torch.load(path, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:
            raise CheckpointError(f"{path}: not a readable training checkpoint ({exc})") from exc
        if not isinstance(raw, dict) or raw.get("version") != CHECKPOINT_VERSION:
            raise CheckpointError(
                f"{path}: not a version-{CHECKPOINT_VERSION} training checkpoint of resnet-serve"
            )
        missing = [f.name for f in fields(cls) if f.name not in raw]
        if missing:
            raise CheckpointError(f"{path}: training checkpoint lacks {', '.join(missing)}")
        return cls(**{f.name: raw[f.name] for f in fields(cls)})

    def check_compatible(self, path: Path, arch: str, classes: list[str]) -> None:
        """Refuse to resume into a different architecture or class list."""
        if self.arch != arch:
            raise CheckpointError(f"{path}: checkpoint is for {self.arch}, but --arch is {arch}")
        if self.classes != classes:
            raise CheckpointError(
                f"{path}: checkpoint classes {self.classes} differ from the dataset's {classes}"
            )
