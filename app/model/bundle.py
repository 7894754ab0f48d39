"""Model bundles: the folder that training writes and serving reads.

A bundle is ``model.safetensors`` (weights, never pickled) beside ``model.json`` (architecture, ordered
labels, preprocessing, provenance and the weights' sha256). Loading checks everything and raises
``BundleError`` with one sentence naming the file and the problem, so a bad bundle stops start-up
instead of serving garbage, and a weights file changed on disk is refused before it is deserialised.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import re
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

import torch
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from app.model.preprocessing import PreprocessingSpec
from app.model.resnet import ResNet, build_resnet, check_arch

logger = logging.getLogger(__name__)
FORMAT_VERSION: Final = 1
MANIFEST_FILE = "model.json"
WEIGHTS_FILE = "model.safetensors"
HASH_CHUNK_BYTES = 1 << 20


class BundleError(Exception):
    """A bundle is missing, malformed or does not match its own description."""


class Provenance(BaseModel):
    """Where the weights came from; informational, shown by /health and kept for audits."""

    model_config = ConfigDict(extra="allow")

    pretrained: str = "none"
    dataset: str = ""
    epochs: int = 0
    metrics: dict[str, float] = Field(default_factory=dict)
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))


class Calibration(BaseModel):
    """How far to trust the model's scores: a softmax temperature and an abstain threshold.

    Serving divides the logits by ``temperature`` before the softmax; an image whose top score falls
    below ``abstain_threshold`` is answered with ``abstained: true``. Fitted on labelled held-out
    images (``fitted_on`` says which) by ``resnet-serve finetune`` or ``resnet-serve calibrate``.
    """

    model_config = ConfigDict(extra="forbid")

    temperature: float = Field(gt=0, allow_inf_nan=False)
    abstain_threshold: float | None = Field(None, ge=0, le=1)
    target_recall: float | None = Field(None, gt=0, le=1)
    fitted_on: str = ""


class BundleManifest(BaseModel):
    """The contents of ``model.json``."""

    model_config = ConfigDict(extra="forbid")

    format_version: Literal[1] = FORMAT_VERSION
    name: str = Field(min_length=1)
    arch: str
    num_classes: int = Field(ge=1)
    labels: list[str]
    preprocessing: PreprocessingSpec
    # Optional so bundles written before it still load; save_bundle always records it.
    weights_sha256: str | None = None
    provenance: Provenance = Field(default_factory=Provenance)
    # Optional: bundles without it serve plain softmax scores (temperature 1) and never abstain.
    calibration: Calibration | None = None
    # Labels that mean "none of these" (a trained clutter class): an answer whose top class is one
    # of them abstains whatever its score, unless RESNET_SERVE_ABSTAIN_LABELS says otherwise.
    # Empty for bundles written before it, which keep serving as they did.
    abstain_labels: list[str] = Field(default_factory=list)

    @field_validator("weights_sha256")
    @classmethod
    def _check_sha256(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[0-9a-f]{64}", value):
            raise ValueError("must be 64 lowercase hexadecimal digits (a sha256 of the weights)")
        return value

    @model_validator(mode="after")
    def _check_consistency(self) -> BundleManifest:
        check_arch(self.arch)
        if len(self.labels) != self.num_classes:
            raise ValueError(
                f"{len(self.labels)} labels for num_classes={self.num_classes}; they must match"
            )
        if len(set(self.labels)) != len(self.labels):
            raise ValueError("labels must be unique")
        unknown = sorted(set(self.abstain_labels) - set(self.labels))
        if unknown:
            raise ValueError(f"abstain_labels {unknown} are not among the labels")
        if len(set(self.abstain_labels)) == len(self.labels):
            raise ValueError("abstain_labels must leave at least one label that answers")
        return self

    @property
    def temperature(self) -> float:
        """The softmax temperature of the served scores, 1 for an uncalibrated bundle."""
        return self.calibration.temperature if self.calibration else 1.0

    @property
    def abstain_threshold(self) -> float:
        """The calibrated abstain threshold, 0 (never abstain) for an uncalibrated bundle."""
        calibration = self.calibration
        if calibration is None or calibration.abstain_threshold is None:
            return 0.0
        return calibration.abstain_threshold


@dataclass(frozen=True)
class Bundle:
    """A loaded bundle: its manifest and the model, in eval mode, on the requested device."""

    manifest: BundleManifest
    model: ResNet
    directory: Path


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    return f"{where}: {first['msg']}" if where else first["msg"]


def read_manifest(directory: Path) -> BundleManifest:
    """Parse and validate ``model.json`` in ``directory``."""
    path = Path(directory) / MANIFEST_FILE
    if not path.is_file():
        raise BundleError(
            f"{path}: missing file (a bundle needs {MANIFEST_FILE} and {WEIGHTS_FILE})"
        )
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{path}: not valid JSON ({exc})") from exc
    if isinstance(raw, dict) and raw.get("format_version", FORMAT_VERSION) != FORMAT_VERSION:
        raise BundleError(
            f"{path}: unknown format_version {raw['format_version']!r}; "
            f"this version reads {FORMAT_VERSION}"
        )
    try:
        return BundleManifest.model_validate(raw)
    except ValidationError as exc:
        raise BundleError(f"{path}: {_describe(exc)}") from exc


def check_state_dict(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Raise ``BundleError`` unless ``state`` has exactly the model's tensor names and shapes."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise BundleError(
            f"{source}: tensors do not match the architecture "
            f"(missing: {missing[:3]}, unexpected: {unexpected[:3]})"
        )
    for name, tensor in expected.items():
        if tuple(state[name].shape) != tuple(tensor.shape):
            raise BundleError(
                f"{source}: tensor {name} has shape {tuple(state[name].shape)}, "
                f"the architecture needs {tuple(tensor.shape)}"
            )


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in chunks so a large weights file is never held twice in memory."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _check_weights_hash(weights_path: Path, expected: str | None) -> None:
    if expected is None:
        # Warned once per load; older bundles have no hash and must keep loading.
        logger.warning(
            "%s records no weights_sha256; %s is loaded unverified (re-save the bundle to add it)",
            weights_path.parent / MANIFEST_FILE,
            weights_path,
        )
        return
    try:
        actual = file_sha256(weights_path)
    except OSError as exc:
        raise BundleError(f"{weights_path}: cannot be read ({exc.strerror or exc})") from exc
    if actual != expected:
        raise BundleError(
            f"{weights_path}: does not match the sha256 recorded in {MANIFEST_FILE} "
            "(tampered or corrupted); refusing to load"
        )


def load_bundle(
    directory: Path | str, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> Bundle:
    """Load and validate a bundle; weights are cast to ``dtype`` (the file may hold fp16)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise BundleError(f"{directory}: bundle folder does not exist")
    manifest = read_manifest(directory)
    weights_path = directory / WEIGHTS_FILE
    if not weights_path.is_file():
        raise BundleError(f"{weights_path}: missing file")
    _check_weights_hash(weights_path, manifest.weights_sha256)  # before a byte is deserialised
    try:
        state = load_file(weights_path)
    except (SafetensorError, OSError) as exc:
        raise BundleError(f"{weights_path}: not a readable safetensors file ({exc})") from exc
    model = build_resnet(manifest.arch, manifest.num_classes)
    check_state_dict(model, state, str(weights_path))
    model.load_state_dict(state, strict=True)
    model.to(device=device, dtype=dtype).eval()
    return Bundle(manifest=manifest, model=model, directory=directory)


def save_bundle(
    directory: Path | str,
    model: ResNet,
    manifest: BundleManifest,
    weights_dtype: torch.dtype = torch.float32,
) -> Path:
    """Write ``model.safetensors`` and ``model.json``; floating tensors are stored as ``weights_dtype``.

    The manifest written records the sha256 of the weights file written, whatever ``manifest`` held.
    Both files are written into a staging folder beside ``directory`` that then takes its place, so
    a reader (a server starting up) sees the old bundle or the new one, never half of one. A folder
    already at ``directory`` is replaced whole.
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = directory.with_name(f".{directory.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        _write_bundle_files(staging, model, manifest, weights_dtype)
        _swap_into_place(staging, directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return directory


def _swap_into_place(staging: Path, directory: Path) -> None:
    if not directory.exists():
        staging.rename(directory)
        return
    retired = directory.with_name(f".{directory.name}.old-{os.getpid()}")
    directory.rename(retired)
    staging.rename(directory)
    shutil.rmtree(retired, ignore_errors=True)


def _write_bundle_files(
    directory: Path, model: ResNet, manifest: BundleManifest, weights_dtype: torch.dtype
) -> None:
    state = {
        name: (t.to(weights_dtype) if t.is_floating_point() else t).detach().cpu().contiguous()
        for name, t in model.state_dict().items()
    }
    check_state_dict(build_resnet(manifest.arch, manifest.num_classes), state, str(directory))
    weights_path = directory / WEIGHTS_FILE
    save_file(state, weights_path, metadata={"format": "pt", "arch": manifest.arch})
    weights_path.chmod(0o644)  # safetensors writes 0600; a container's non-root user must read it
    manifest = manifest.model_copy(update={"weights_sha256": file_sha256(weights_path)})
    (directory / MANIFEST_FILE).write_text(manifest.model_dump_json(indent=2) + "\n", "utf-8")


def write_manifest(directory: Path | str, manifest: BundleManifest) -> Path:
    """Replace ``model.json`` in ``directory`` atomically; the weights file is left untouched.

    For changes that leave the weights alone (a new calibration), so ``weights_sha256`` stays valid.
    The JSON goes to a temporary file beside it that then replaces it, so a reader sees the old
    manifest or the new one, never half of one.
    """
    path = Path(directory) / MANIFEST_FILE
    staging = path.with_name(f".{MANIFEST_FILE}.partial-{os.getpid()}")
    try:
        staging.write_text(manifest.model_dump_json(indent=2) + "\n", "utf-8")
        staging.chmod(0o644)
        os.replace(staging, path)
    finally:
        staging.unlink(missing_ok=True)
    return path


def load_torchvision_checkpoint(path: Path | str) -> dict[str, Any]:
    """Read a torchvision ``.pth`` state dict without unpickling arbitrary objects.

    Accepts a bare state dict or the common ``{"state_dict": ...}`` / ``{"model": ...}`` wrappers.
    """
    try:
        loaded = torch.load(Path(path), map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:
        raise BundleError(f"{path}: not a readable PyTorch checkpoint ({exc})") from exc
    for key in ("state_dict", "model"):
        if isinstance(loaded, dict) and isinstance(loaded.get(key), dict):
            loaded = loaded[key]
    if not isinstance(loaded, dict) or not all(
        isinstance(v, torch.Tensor) for v in loaded.values()
    ):
        raise BundleError(f"{path}: does not hold a state dict of tensors")
    return loaded
