"""Image-folder datasets: one subfolder per class, scanned once, split by class, loaded lazily.

Every file is decoded once while scanning, with the same decoder the service uses for uploads, so a
corrupt image is reported up front (and skipped) instead of crashing a worker halfway through an
epoch.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from app.model.preprocessing import ImageDecodeError, ImageTooLargeError, load_image_file

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff", ".mpo"}
)
_LISTED_SKIPS = 5  # how many unreadable files the warning names before it just counts


class DatasetError(ValueError):
    """A dataset folder cannot be used for training or evaluation."""


Sample = tuple[Path, int]


@dataclass(frozen=True)
class ImageFolder:
    """The readable images of a folder: ``samples`` are (path, index into ``classes``);
    ``skipped`` are (path, reason) for the files that did not decode."""

    classes: tuple[str, ...]
    samples: tuple[Sample, ...]
    skipped: tuple[tuple[Path, str], ...]


def _readable(path: Path) -> str | None:
    """None if ``path`` decodes as an image, else the reason it does not."""
    try:
        load_image_file(str(path))
    except (ImageDecodeError, ImageTooLargeError, OSError) as exc:
        return str(exc)
    return None


def _class_folders(root: Path) -> list[Path]:
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder does not exist")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise DatasetError(f"{root}: no class folders; expected one subfolder of images per class")
    return folders


def _image_files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file() and not p.name.startswith(".")
    )


def _warn_skipped(root: Path, skipped: Sequence[tuple[Path, str]]) -> None:
    listed = ", ".join(f"{path.relative_to(root)} ({why})" for path, why in skipped[:_LISTED_SKIPS])
    more = f" and {len(skipped) - _LISTED_SKIPS} more" if len(skipped) > _LISTED_SKIPS else ""
    logger.warning("%s: skipped %d unreadable image(s): %s%s", root, len(skipped), listed, more)


def scan_image_folder(root: Path | str, classes: Sequence[str] | None = None) -> ImageFolder:
    """Find and check every image under ``root/<class>/``.

    With ``classes`` (a model's labels, or the training folder's classes) the folder's classes must
    be a subset of them and labels index into ``classes``; otherwise the sorted subfolder names are
    the classes and there must be at least two. Unreadable files are skipped with one warning; a
    class folder without a single readable image is a ``DatasetError``.
    """
    root = Path(root)
    folders = _class_folders(root)
    names = [folder.name for folder in folders]
    if classes is None:
        if len(names) < 2:
            raise DatasetError(
                f"{root}: found only one class ({names[0]}); a classifier needs at least two"
            )
        classes = names
    else:
        unknown = sorted(set(names) - set(classes))
        if unknown:
            raise DatasetError(
                f"{root}: classes {unknown} are not among the known classes ({', '.join(classes)})"
            )
    index = {name: i for i, name in enumerate(classes)}
    candidates = [(path, index[folder.name]) for folder in folders for path in _image_files(folder)]
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        reasons = list(pool.map(_readable, [path for path, _ in candidates]))
    samples = tuple(sample for sample, why in zip(candidates, reasons, strict=True) if why is None)
    skipped = tuple(
        (path, why) for (path, _), why in zip(candidates, reasons, strict=True) if why is not None
    )
    if skipped:
        _warn_skipped(root, skipped)
    found = {label for _, label in samples}
    empty = [folder.name for folder in folders if index[folder.name] not in found]
    if empty:
        raise DatasetError(f"{root}: class folder(s) {empty} contain no readable images")
    return ImageFolder(tuple(classes), samples, skipped)


def scan_unlabelled_folder(root: Path | str) -> list[Path]:
    """Every readable image anywhere under ``root`` (no class folders needed), sorted.

    For out-of-distribution sets: images of none of the model's classes. Unreadable files are
    skipped with one warning; a folder without a single readable image is a ``DatasetError``.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: folder does not exist")
    candidates = _image_files(root)
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        reasons = list(pool.map(_readable, candidates))
    skipped = [(path, why) for path, why in zip(candidates, reasons, strict=True) if why]
    if skipped:
        _warn_skipped(root, skipped)
    paths = [path for path, why in zip(candidates, reasons, strict=True) if why is None]
    if not paths:
        raise DatasetError(f"{root}: no readable images")
    return paths


def stratified_split(
    samples: Sequence[Sample], val_fraction: float, seed: int
) -> tuple[list[Sample], list[Sample]]:
    """Seeded split that keeps each class's share: every class with >= 2 images gets >= 1 in each part."""
    if not 0.0 < val_fraction < 1.0:
        raise DatasetError(f"val fraction must be between 0 and 1, got {val_fraction}")
    rng = np.random.default_rng(seed)
    by_class: dict[int, list[Sample]] = {}
    for sample in samples:
        by_class.setdefault(sample[1], []).append(sample)
    train: list[Sample] = []
    val: list[Sample] = []
    for label in sorted(by_class):
        members = by_class[label]
        order = rng.permutation(len(members))
        n_val = min(max(1, round(len(members) * val_fraction)), len(members) - 1)
        val += [members[i] for i in order[:n_val]]
        train += [members[i] for i in order[n_val:]]
    if not val:
        raise DatasetError("no class has two images, so there is nothing to validate on")
    return train, val


class ImageDataset(Dataset[tuple[torch.Tensor, int]]):
    """Decodes each image on access and applies ``transform`` (PIL RGB -> tensor).

    ``draft_size`` decodes JPEGs at a reduced DCT scale, as the service does (``decode_image``).
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        transform: Callable[..., torch.Tensor],
        draft_size: int | None = None,
    ) -> None:
        self.samples = list(samples)
        self.transform = transform
        self.draft_size = draft_size

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        return self.transform(load_image_file(str(path), draft_size=self.draft_size)), label


def make_loader(
    dataset: ImageDataset,
    *,
    batch_size: int,
    workers: int,
    device: torch.device,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
) -> DataLoader[tuple[torch.Tensor, int]]:
    """A DataLoader with the settings both training and evaluation want.

    Training drops a ragged last batch (a tiny batch gives noisy BatchNorm statistics) unless that
    would leave an epoch empty; workers stay alive across epochs instead of being re-forked each time.
    """
    if batch_size < 1:
        raise ValueError(f"batch size must be positive, got {batch_size}")
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        drop_last=shuffle and len(dataset) > batch_size,
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=device.type == "cuda",
        generator=generator,
    )
