"""A model folder of numbered versions, as Triton lays out a model in its repository.

``MODEL_DIR`` is either one bundle (its ``model.json`` at the top: version 1) or a folder of
versions, ``1/``, ``2/``, ..., each a bundle; the highest number is served. A version folder is
written beside and renamed into place (as ``finetune --out`` does), so a folder that holds a
``model.json`` is complete; anything else in the folder is ignored.
"""

from __future__ import annotations

import re
from pathlib import Path

from app.model.bundle import BundleError

BUNDLE_FILE = "model.json"
# Triton's version folders: positive integers. Nine digits at most: no folder name is a number
# that takes a noticeable time to read.
VERSION_NAME = re.compile(r"[1-9][0-9]{0,8}")


def version_dirs(model_dir: Path) -> dict[int, Path]:
    """The numbered version folders under ``model_dir`` that hold a bundle, by number."""
    try:
        entries = list(model_dir.iterdir())
    except OSError:
        return {}
    return {
        int(entry.name): entry
        for entry in entries
        if VERSION_NAME.fullmatch(entry.name) and (entry / BUNDLE_FILE).is_file()
    }


def is_versioned(model_dir: Path) -> bool:
    """Whether ``model_dir`` is a folder of versions rather than one bundle (a folder that does
    not exist is left to the bundle loader, which says so)."""
    return model_dir.is_dir() and not (model_dir / BUNDLE_FILE).is_file()


def served_version(model_dir: Path) -> tuple[str, Path]:
    """The version to serve from ``model_dir`` and its bundle folder: the bundle itself as
    version "1", or the highest numbered version. ``BundleError`` when there is neither."""
    if not is_versioned(model_dir):
        return "1", model_dir
    found = version_dirs(model_dir)
    if not found:
        raise BundleError(
            f"{model_dir}: no {BUNDLE_FILE}, and no numbered version folder (1/, 2/, ...) holding one"
        )
    latest = max(found)
    return str(latest), found[latest]


def fingerprint(bundle_dir: Path) -> tuple[tuple[str, int, int], ...]:
    """Names, sizes and modification times of a version's files: a refused version is tried
    again only once this changes (its files were replaced)."""
    try:
        files = sorted(path for path in bundle_dir.iterdir() if path.is_file())
        return tuple((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    except OSError:
        return ()
