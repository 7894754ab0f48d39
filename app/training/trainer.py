"""One training epoch: forward under autocast, scaled backward, optimiser and per-step schedule.

``Trainer`` owns the pieces whose state a checkpoint must carry (optimiser, schedule, loss scaler)
and nothing about datasets, epochs or bundles, so the loop in ``finetune`` stays readable.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler
from tqdm import tqdm

from app.model.resnet import ResNet
from app.training.optim import set_backbone_frozen, set_train_mode
from app.training.runtime import Precision


class TrainingDivergedError(ValueError):
    """The loss stopped being a finite number: the learning rate is too high for this data."""


@dataclass(frozen=True)
class EpochResult:
    """Mean training loss (with label smoothing) and accuracy over the images seen."""

    loss: float
    accuracy: float
    images: int
    seconds: float

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0


class Trainer:
    """Trains ``model`` in place; ``state_dict`` / ``load_state_dict`` cover everything but the model."""

    def __init__(
        self,
        model: ResNet,
        optimizer: Optimizer,
        scheduler: LRScheduler,
        precision: Precision,
        label_smoothing: float,
        progress: bool = True,
    ) -> None:
        self.model = model
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.precision = precision
        self.criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        # A float16 forward can overflow the gradients; the scaler rescales them and skips bad steps.
        self.scaler = torch.amp.GradScaler(precision.device.type, enabled=precision.needs_scaler)
        self.progress = progress

    def train_epoch(
        self,
        batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
        description: str,
        backbone_frozen: bool,
    ) -> EpochResult:
        set_backbone_frozen(self.model, backbone_frozen)
        set_train_mode(self.model, backbone_frozen)
        device = self.precision.device
        loss_sum, correct, seen = 0.0, 0, 0
        start = time.perf_counter()
        bar = tqdm(
            batches, desc=description, unit="batch", leave=False, file=sys.stderr,
            disable=not self.progress, dynamic_ncols=True,
        )  # fmt: skip
        for images, targets in bar:
            images = images.to(device, non_blocking=True, memory_format=torch.channels_last)
            targets = targets.to(device, non_blocking=True)
            with self.precision.autocast():
                logits = self.model(images)
                loss = self.criterion(logits, targets)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            value = loss.item()
            if not math.isfinite(value):
                if self.scaler.is_enabled():
                    continue  # the scaler skipped this step and lowers its scale
                raise TrainingDivergedError(
                    f"{description}: the training loss became {value}; lower --lr"
                )
            loss_sum += value * len(targets)
            correct += int((logits.argmax(dim=1) == targets).sum())
            seen += len(targets)
            bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{100 * correct / seen:.1f}%")
        bar.close()
        seconds = time.perf_counter() - start
        return EpochResult(loss_sum / max(seen, 1), correct / max(seen, 1), seen, seconds)

    def state_dict(self) -> dict[str, dict[str, Any]]:
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
        }

    def load_state_dict(self, state: dict[str, dict[str, Any]]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        # A disabled scaler saves {}; loading {} into an enabled one would raise.
        if self.scaler.is_enabled() and state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
