"""Model folders and their numbered versions, as Triton lays out its model repository.

A model folder is either one bundle (its ``model.json`` at the top: version 1) or a folder of
versions, ``1/``, ``2/``, ..., each a bundle; its version policy (``app.serving.model_config``)
says which serve, by default the highest. A repository (``MODEL_REPOSITORY``) is a folder of model
folders, each served under its folder's name; ``MODEL_DIR`` is a repository of one, served under
its bundle's name. A version folder is written beside and renamed into place (as ``finetune
--out`` does), so a folder that holds a ``model.json`` is complete; anything else, and any hidden
folder, is ignored.
"""

from __future__ import annotations

import re
from pathlib import Path

from app.model.bundle import BundleError
from app.serving.model_config import VersionPolicy

BUNDLE_FILE = "model.json"
# Where KServe mounts an InferenceService's storageUri: the models are found there by themselves.
KSERVE_MODEL_MOUNT = Path("/mnt/models")
# A model's name is in URLs (/v2/models/{name}) and metric labels: a folder named otherwise is
# not a model.
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
# Triton's version folders: positive integers. Nine digits at most: no folder name is a number
# that takes a noticeable time to read.
VERSION_NAME = re.compile(r"[1-9][0-9]{0,8}")


def _entries(folder: Path) -> list[Path]:
    """What ``folder`` holds, sorted; nothing when it cannot be read (or is gone)."""
    try:
        return sorted(folder.iterdir())
    except OSError:
        return []


def version_dirs(model_dir: Path) -> dict[int, Path]:
    """The numbered version folders under ``model_dir`` that hold a bundle, by number."""
    return {
        int(entry.name): entry
        for entry in _entries(model_dir)
        if VERSION_NAME.fullmatch(entry.name) and (entry / BUNDLE_FILE).is_file()
    }


def is_versioned(model_dir: Path) -> bool:
    """Whether ``model_dir`` is a folder of versions rather than one bundle (a folder that does
    not exist is left to the bundle loader, which says so)."""
    return model_dir.is_dir() and not (model_dir / BUNDLE_FILE).is_file()


def is_model_folder(path: Path) -> bool:
    """Whether ``path`` is a model: a bundle, or a folder of numbered versions."""
    return (path / BUNDLE_FILE).is_file() or bool(version_dirs(path))


def repository_models(repository: Path) -> dict[str, Path]:
    """The model folders in ``repository``, by name (their folder's)."""
    return {
        entry.name: entry
        for entry in _entries(repository)
        if MODEL_NAME.fullmatch(entry.name) and entry.is_dir() and is_model_folder(entry)
    }


def available_versions(model_dir: Path) -> dict[int, Path]:
    """Every version ``model_dir`` holds, with its bundle folder: the bundle itself as version 1,
    or its numbered version folders."""
    return version_dirs(model_dir) if is_versioned(model_dir) else {1: model_dir}


def served_versions(model_dir: Path, policy: VersionPolicy) -> dict[int, Path]:
    """The versions to serve from ``model_dir`` by ``policy``, with their bundle folders: the
    bundle itself as version 1, or the numbered versions the policy selects. ``BundleError`` when
    there is none."""
    found = available_versions(model_dir)
    if not found:
        raise BundleError(
            f"{model_dir}: no {BUNDLE_FILE}, and no numbered version folder (1/, 2/, ...) holding one"
        )
    selected = {number: found[number] for number in policy.select(list(found))}
    if not selected:
        raise BundleError(
            f"{model_dir}: its version policy selects none of versions "
            f"{', '.join(map(str, sorted(found)))}"
        )
    return selected


def fingerprint(bundle_dir: Path) -> tuple[tuple[str, int, int], ...]:
    """Names, sizes and modification times of a version's files: a refused version is tried
    again only once this changes (its files were replaced)."""
    try:
        files = sorted(path for path in bundle_dir.iterdir() if path.is_file())
        return tuple((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    except OSError:
        return ()
