"""Starting weights for fine-tuning: none, torchvision's ImageNet weights, a ``.pth`` or a bundle.

Only the backbone is taken: the source's classifier head belongs to other classes, so the model keeps
the fresh head that ``reset_classifier`` gave it. Every backbone tensor must match by name and shape,
so a checkpoint for another architecture fails with one sentence instead of half-loading.
"""

from __future__ import annotations

from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path

import torch
import torchvision

from app.model.bundle import (
    BundleError,
    check_state_dict,
    load_bundle,
    load_torchvision_checkpoint,
    read_manifest,
)
from app.model.preprocessing import IMAGENET_MEAN, IMAGENET_STD, Interpolation
from app.model.resnet import ResNet

HEAD_PREFIX = "fc."
IMAGENET_SIZES = (224, 256)  # torchvision's ImageNet crop and resize


@dataclass(frozen=True)
class StartingWeights:
    """A backbone state dict (None: random init) and the preprocessing its training used.

    ``trained_at`` is the (input size, resize size) the weights were trained at: a fine-tune keeps
    it unless told otherwise, because learned features are tuned to the scale they saw.
    """

    description: str
    state: dict[str, torch.Tensor] | None
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: Interpolation = "bilinear"
    trained_at: tuple[int, int] | None = IMAGENET_SIZES

    @property
    def pretrained(self) -> bool:
        return self.state is not None


def _imagenet(arch: str) -> StartingWeights:
    weights = torchvision.models.get_model_weights(arch).DEFAULT
    try:
        state = weights.get_state_dict(progress=True)
    except (OSError, RuntimeError, HTTPException) as exc:
        raise ValueError(
            f"could not fetch torchvision's ImageNet weights {weights} ({exc}); without network "
            "access download them elsewhere and pass --pretrained PATH.pth"
        ) from exc
    preset = weights.transforms()
    return StartingWeights(
        description=f"imagenet: torchvision {weights}",
        state=state,
        mean=tuple(preset.mean),
        std=tuple(preset.std),
        interpolation=preset.interpolation.value,
        trained_at=(preset.crop_size[0], preset.resize_size[0]),
    )


def _bundle(directory: Path, arch: str) -> StartingWeights:
    manifest = read_manifest(directory)  # checked before the weights are read: a cheap, clear error
    if manifest.arch != arch:
        raise BundleError(
            f"{directory}: the bundle is a {manifest.arch}, but --arch is {arch}; "
            f"pass --arch {manifest.arch} to fine-tune from it"
        )
    bundle = load_bundle(directory)
    spec = bundle.manifest.preprocessing
    return StartingWeights(
        description=f"bundle: {directory} ({manifest.name})",
        state=bundle.model.state_dict(),
        mean=spec.mean,
        std=spec.std,
        interpolation=spec.interpolation,
        trained_at=(spec.input_size, spec.resize_size),
    )


def resolve_starting_weights(source: str, arch: str) -> StartingWeights:
    """Turn ``--pretrained`` (``none``, ``imagenet``, a ``.pth`` file or a bundle folder) into weights.

    A ``.pth`` is assumed to be an ImageNet-normalised torchvision checkpoint; a bundle brings its
    own normalisation, which the fine-tuned model must keep using.
    """
    if source == "none":
        return StartingWeights(description="none", state=None, trained_at=None)
    if source == "imagenet":
        return _imagenet(arch)
    path = Path(source)
    if path.is_dir():
        return _bundle(path, arch)
    if path.is_file():
        return StartingWeights(
            description=f"torchvision checkpoint: {path}", state=load_torchvision_checkpoint(path)
        )
    raise ValueError(
        f"--pretrained {source!r}: no such file or folder; use none, imagenet, a .pth file "
        "or a bundle folder"
    )


def load_backbone(model: ResNet, state: dict[str, torch.Tensor], source: str) -> None:
    """Copy every non-head tensor of ``state`` into ``model``, strictly; the model's head is kept.

    ``source`` names the weights in the ``BundleError`` raised when a name or shape differs.
    """
    current = model.state_dict()
    merged = {name: t for name, t in state.items() if not name.startswith(HEAD_PREFIX)}
    for name, tensor in current.items():
        if name.startswith(HEAD_PREFIX):
            merged[name] = tensor
        elif name.endswith("num_batches_tracked"):
            # Old torchvision checkpoints predate this BatchNorm counter; it is bookkeeping, not a
            # weight, and it is unused with the default momentum.
            merged.setdefault(name, tensor)
    check_state_dict(model, merged, source)
    model.load_state_dict(merged, strict=True)
