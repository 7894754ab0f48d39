"""Bundles: lossless round trip, fp16 storage, torchvision import, weights checked against their
recorded sha256, and one clear error per defect."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torchvision

from app.model.bundle import (
    MANIFEST_FILE,
    WEIGHTS_FILE,
    BundleError,
    BundleManifest,
    Calibration,
    load_bundle,
    load_torchvision_checkpoint,
    save_bundle,
    write_manifest,
)
from app.model.preprocessing import PreprocessingSpec
from app.model.resnet import ResNet, build_resnet

LABELS = ["cat", "dog", "fox"]


def _trained_looking_model() -> ResNet:
    """ResNet-18 with non-trivial BatchNorm statistics, so a lost buffer changes the logits."""
    torch.manual_seed(0)
    model = build_resnet("resnet18", num_classes=len(LABELS))
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(4, 3, 32, 32) * 3 + 1)
    return model.eval()


def _manifest(**changes: object) -> BundleManifest:
    fields: dict[str, object] = {
        "name": "pets",
        "arch": "resnet18",
        "num_classes": len(LABELS),
        "labels": LABELS,
        "preprocessing": PreprocessingSpec(input_size=32, resize_size=36),
    }
    return BundleManifest(**(fields | changes))


@pytest.fixture
def model() -> ResNet:
    return _trained_looking_model()


@pytest.fixture
def bundle_dir(tmp_path: Path, model: ResNet) -> Path:
    return save_bundle(tmp_path / "pets", model, _manifest())


def _logits(model: torch.nn.Module) -> torch.Tensor:
    torch.manual_seed(1)
    with torch.inference_mode():
        return model(torch.randn(2, 3, 32, 32))


def test_round_trip_gives_identical_logits_and_manifest(bundle_dir: Path, model: ResNet) -> None:
    bundle = load_bundle(bundle_dir)
    torch.testing.assert_close(_logits(bundle.model), _logits(model), rtol=0, atol=0)
    unchecked = {"provenance", "weights_sha256"}
    assert bundle.manifest.model_dump(exclude=unchecked) == _manifest().model_dump(
        exclude=unchecked
    )
    assert not bundle.model.training


def test_float16_storage_halves_the_file_and_loads_close(
    tmp_path: Path, bundle_dir: Path, model: ResNet
) -> None:
    half = save_bundle(tmp_path / "half", model, _manifest(), weights_dtype=torch.float16)
    size32 = (bundle_dir / WEIGHTS_FILE).stat().st_size
    size16 = (half / WEIGHTS_FILE).stat().st_size
    assert size16 < 0.51 * size32
    loaded = load_bundle(half)
    assert loaded.model.fc.weight.dtype == torch.float32
    torch.testing.assert_close(_logits(loaded.model), _logits(model), rtol=1e-2, atol=1e-2)


def _edit_manifest(change: Callable[[dict[str, object]], None]) -> Callable[[Path], None]:
    def edit(directory: Path) -> None:
        path = directory / MANIFEST_FILE
        raw = json.loads(path.read_text())
        change(raw)
        path.write_text(json.dumps(raw))

    return edit


def _shape_mismatch(raw: dict[str, object]) -> None:
    raw["num_classes"] = 4
    raw["labels"] = [*LABELS, "owl"]


DEFECTS: dict[str, tuple[Callable[[Path], None], str, str]] = {
    "missing manifest": (lambda d: (d / MANIFEST_FILE).unlink(), MANIFEST_FILE, "missing file"),
    "missing weights": (lambda d: (d / WEIGHTS_FILE).unlink(), WEIGHTS_FILE, "missing file"),
    "invalid JSON": (
        lambda d: (d / MANIFEST_FILE).write_text("{not json"),
        MANIFEST_FILE,
        "not valid JSON",
    ),
    "unknown format version": (
        _edit_manifest(lambda raw: raw.update(format_version=2)),
        MANIFEST_FILE,
        "unknown format_version 2",
    ),
    "unknown arch": (
        _edit_manifest(lambda raw: raw.update(arch="resnet9")),
        MANIFEST_FILE,
        "unknown arch 'resnet9'",
    ),
    "label count": (
        _edit_manifest(lambda raw: raw.update(labels=["cat", "dog"])),
        MANIFEST_FILE,
        "2 labels for num_classes=3",
    ),
    "tensor shape": (
        _edit_manifest(_shape_mismatch),
        WEIGHTS_FILE,
        "tensor fc.weight has shape (3, 512), the architecture needs (4, 512)",
    ),
    "corrupt weights": (
        lambda d: (d / WEIGHTS_FILE).write_bytes(b"\x00" * 64),
        WEIGHTS_FILE,
        "does not match the sha256 recorded in model.json",
    ),
    "corrupt weights of an unhashed bundle": (
        lambda d: (
            _edit_manifest(lambda raw: raw.pop("weights_sha256"))(d),
            (d / WEIGHTS_FILE).write_bytes(b"\x00" * 64),
        ),
        WEIGHTS_FILE,
        "not a readable safetensors file",
    ),
    "zero temperature": (
        _edit_manifest(lambda raw: raw.update(calibration={"temperature": 0.0})),
        MANIFEST_FILE,
        "calibration.temperature: Input should be greater than 0",
    ),
    "abstain threshold above 1": (
        _edit_manifest(
            lambda raw: raw.update(calibration={"temperature": 1.5, "abstain_threshold": 1.2})
        ),
        MANIFEST_FILE,
        "calibration.abstain_threshold: Input should be less than or equal to 1",
    ),
    "abstain label not among the labels": (
        _edit_manifest(lambda raw: raw.update(abstain_labels=["dog", "clutter"])),
        MANIFEST_FILE,
        "abstain_labels ['clutter'] are not among the labels",
    ),
    "every label abstains": (
        _edit_manifest(lambda raw: raw.update(abstain_labels=LABELS)),
        MANIFEST_FILE,
        "abstain_labels must leave at least one label that answers",
    ),
    "malformed sha256": (
        _edit_manifest(lambda raw: raw.update(weights_sha256="ABC123")),
        MANIFEST_FILE,
        "weights_sha256: Value error, must be 64 lowercase hexadecimal digits",
    ),
}


@pytest.mark.parametrize("defect", list(DEFECTS))
def test_each_defect_raises_bundle_error_naming_the_file(bundle_dir: Path, defect: str) -> None:
    damage, file_name, message = DEFECTS[defect]
    damage(bundle_dir)
    with pytest.raises(BundleError) as caught:
        load_bundle(bundle_dir)
    assert str(caught.value).startswith(f"{bundle_dir / file_name}: ")
    assert message in str(caught.value)


def _flip_one_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_saved_bundle_records_the_sha256_of_its_weights(tmp_path: Path, model: ResNet) -> None:
    stale = "0" * 64  # whatever the caller's manifest held is replaced by the real hash
    directory = save_bundle(tmp_path / "pets", model, _manifest(weights_sha256=stale))
    recorded = json.loads((directory / MANIFEST_FILE).read_text())["weights_sha256"]
    assert recorded == hashlib.sha256((directory / WEIGHTS_FILE).read_bytes()).hexdigest()
    assert load_bundle(directory).manifest.weights_sha256 == recorded


def test_weights_changed_by_one_byte_are_refused_before_deserialising(
    bundle_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _flip_one_byte(bundle_dir / WEIGHTS_FILE)

    def never(*_: object) -> None:
        raise AssertionError("the tampered weights file was deserialised")

    monkeypatch.setattr("app.model.bundle.load_file", never)
    with pytest.raises(BundleError) as caught:
        load_bundle(bundle_dir)
    assert str(caught.value) == (
        f"{bundle_dir / WEIGHTS_FILE}: does not match the sha256 recorded in model.json "
        "(tampered or corrupted); refusing to load"
    )


def test_bundle_without_a_recorded_sha256_loads_with_one_warning(
    bundle_dir: Path, model: ResNet, caplog: pytest.LogCaptureFixture
) -> None:
    _edit_manifest(lambda raw: raw.pop("weights_sha256"))(bundle_dir)
    with caplog.at_level(logging.WARNING, logger="app.model.bundle"):
        bundle = load_bundle(bundle_dir)
    torch.testing.assert_close(_logits(bundle.model), _logits(model), rtol=0, atol=0)
    assert bundle.manifest.weights_sha256 is None
    (warning,) = caplog.records
    assert "records no weights_sha256" in warning.getMessage()
    assert str(bundle_dir / WEIGHTS_FILE) in warning.getMessage()


def test_missing_bundle_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match=re.escape(f"{tmp_path / 'none'}: bundle folder")):
        load_bundle(tmp_path / "none")


@pytest.mark.parametrize("wrapper", [None, "state_dict", "model"])
def test_torchvision_pth_imports_with_identical_logits(tmp_path: Path, wrapper: str | None) -> None:
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(weights=None, num_classes=3).eval()
    state = reference.state_dict()
    path = tmp_path / "resnet18.pth"
    torch.save(state if wrapper is None else {wrapper: state, "epoch": 7}, path)

    ours = build_resnet("resnet18", num_classes=3)
    ours.load_state_dict(load_torchvision_checkpoint(path), strict=True)
    torch.testing.assert_close(_logits(ours.eval()), _logits(reference), rtol=0, atol=1e-5)


class _NotATensor:
    """Something only a full unpickler could rebuild."""


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"garbage bytes", "not a readable PyTorch checkpoint"),
        ({"fc.weight": _NotATensor()}, "not a readable PyTorch checkpoint"),
        ({"epoch": 3}, "does not hold a state dict of tensors"),
    ],
)
def test_bad_pth_is_a_bundle_error_naming_it(tmp_path: Path, content: object, message: str) -> None:
    path = tmp_path / "bad.pth"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save(content, path)
    with pytest.raises(BundleError, match=re.escape(f"{path}: {message}")):
        load_torchvision_checkpoint(path)


def test_saving_over_a_bundle_replaces_it_whole_and_leaves_no_staging(
    tmp_path: Path, bundle_dir: Path, model: ResNet
) -> None:
    first = bundle_dir
    (first / "stale.txt").write_text("from the old bundle")
    second = save_bundle(first, model, _manifest())
    assert second == first and not (second / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pets"]  # no .partial or .old folder
    assert load_bundle(second).manifest.weights_sha256


def test_calibration_round_trips_and_rewriting_the_manifest_keeps_the_weights_valid(
    bundle_dir: Path,
) -> None:
    assert load_bundle(bundle_dir).manifest.calibration is None  # optional: older bundles load
    weights_before = (bundle_dir / WEIGHTS_FILE).read_bytes()
    calibration = Calibration(
        temperature=1.7, abstain_threshold=0.42, target_recall=0.95, fitted_on="held-out"
    )
    manifest = load_bundle(bundle_dir).manifest
    write_manifest(bundle_dir, manifest.model_copy(update={"calibration": calibration}))
    loaded = load_bundle(bundle_dir)  # the recorded sha256 still matches the weights
    assert loaded.manifest.calibration == calibration
    assert (bundle_dir / WEIGHTS_FILE).read_bytes() == weights_before
    assert sorted(p.name for p in bundle_dir.iterdir()) == [MANIFEST_FILE, WEIGHTS_FILE]


def test_abstain_labels_round_trip_and_bundles_without_them_abstain_on_none(
    bundle_dir: Path,
) -> None:
    raw = json.loads((bundle_dir / MANIFEST_FILE).read_text())
    assert "abstain_labels" in raw  # written by save_bundle
    raw.pop("abstain_labels")  # as a bundle written before the field existed
    (bundle_dir / MANIFEST_FILE).write_text(json.dumps(raw))
    manifest = load_bundle(bundle_dir).manifest
    assert manifest.abstain_labels == []
    write_manifest(bundle_dir, manifest.model_copy(update={"abstain_labels": ["fox"]}))
    assert load_bundle(bundle_dir).manifest.abstain_labels == ["fox"]
