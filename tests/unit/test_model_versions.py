"""MODEL_DIR as one bundle or a folder of numbered versions (app.serving.versions)."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.model.bundle import BundleError
from app.serving.versions import fingerprint, is_versioned, served_version, version_dirs


def _bundle(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "model.json").write_text("{}")
    return path


def test_a_plain_bundle_is_version_1(tmp_path: Path) -> None:
    bundle = _bundle(tmp_path / "demo")
    assert not is_versioned(bundle)
    assert served_version(bundle) == ("1", bundle)


def test_the_highest_numbered_folder_holding_a_bundle_is_served(tmp_path: Path) -> None:
    model = tmp_path / "shapes"
    one, ten = _bundle(model / "1"), _bundle(model / "10")
    _bundle(model / "0")  # not a version: Triton's start at 1
    _bundle(model / ".11.partial")  # still being written
    (model / "12").mkdir()  # no bundle in it yet
    _bundle(model / "v13")
    assert version_dirs(model) == {1: one, 10: ten}
    assert served_version(model) == ("10", ten)


def test_a_folder_with_neither_is_refused_in_one_sentence(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(BundleError, match=r"no model\.json, and no numbered version folder"):
        served_version(tmp_path / "empty")


def test_a_missing_folder_is_left_to_the_bundle_loader(tmp_path: Path) -> None:
    assert served_version(tmp_path / "missing") == ("1", tmp_path / "missing")


def test_the_fingerprint_changes_when_a_file_is_replaced(tmp_path: Path) -> None:
    bundle = _bundle(tmp_path / "1")
    before = fingerprint(bundle)
    (bundle / "model.safetensors").write_bytes(b"weights")
    assert fingerprint(bundle) != before
