"""Optimiser, learning-rate schedule and backbone freezing for fine-tuning.

One optimiser and one schedule cover the whole run: the backbone's parameter groups simply receive no
gradients while it is frozen (both AdamW and SGD skip parameters whose ``grad`` is None), so
unfreezing needs no new optimiser and a resumed run restores exactly one state.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from torch.optim import SGD, AdamW, Optimizer
from torch.optim.lr_scheduler import LambdaLR

from app.model.resnet import ResNet

OptimizerName = Literal["adamw", "sgd"]
# (learning rate, weight decay) when not given: the usual starting points for each optimiser.
OPTIMIZER_DEFAULTS: dict[str, tuple[float, float]] = {"adamw": (1e-3, 0.05), "sgd": (0.05, 1e-4)}
HEAD_GROUP = "head"


def parameter_groups(
    model: ResNet, lr: float, weight_decay: float, backbone_lr_scale: float
) -> list[dict[str, Any]]:
    """Head and backbone groups, each split so biases and BatchNorm weights get no weight decay.

    Decaying BatchNorm scales and biases only fights the normalisation; the backbone learns at
    ``lr * backbone_lr_scale`` so pretrained features move less than the new head.
    """
    head = list(model.fc.parameters())
    head_ids = {id(p) for p in head}
    backbone = [p for p in model.parameters() if id(p) not in head_ids]
    groups: list[dict[str, Any]] = []
    for part, params, part_lr in (
        (HEAD_GROUP, head, lr),
        ("backbone", backbone, lr * backbone_lr_scale),
    ):
        matrices = [p for p in params if p.ndim > 1]
        vectors = [p for p in params if p.ndim <= 1]
        groups.append(
            {"name": part, "params": matrices, "lr": part_lr, "weight_decay": weight_decay}
        )
        groups.append({"name": part, "params": vectors, "lr": part_lr, "weight_decay": 0.0})
    return groups


def build_optimizer(name: OptimizerName, groups: list[dict[str, Any]]) -> Optimizer:
    """AdamW, or SGD with Nesterov momentum 0.9; per-group lr and weight decay come from ``groups``."""
    if name == "adamw":
        return AdamW(groups)
    if name == "sgd":
        return SGD(groups, momentum=0.9, nesterov=True)
    raise ValueError(f"unknown optimizer {name!r}; use adamw or sgd")


def warmup_cosine(optimizer: Optimizer, warmup_steps: int, total_steps: int) -> LambdaLR:
    """Per-step schedule: linear warm-up from lr/warmup_steps to lr, then cosine decay to zero."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return LambdaLR(optimizer, factor)


def head_lr(optimizer: Optimizer) -> float:
    """The head's current learning rate, the one worth printing (the backbone's is a fixed ratio)."""
    return next(g["lr"] for g in optimizer.param_groups if g["name"] == HEAD_GROUP)


def set_backbone_frozen(model: ResNet, frozen: bool) -> None:
    """Stop (or restart) gradients for every parameter outside the head."""
    model.requires_grad_(not frozen)
    model.fc.requires_grad_(True)


def set_train_mode(model: ResNet, backbone_frozen: bool) -> None:
    """Training mode, except that a frozen backbone keeps its BatchNorm statistics in eval mode.

    Updating running statistics of a frozen backbone would shift the features the head is fitted
    to, and with small fine-tuning batches those estimates are noisy anyway.
    """
    model.train()
    if backbone_frozen:
        model.eval()
        model.fc.train()
