"""``resnet-serve calibrate`` and ``evaluate --ood`` on a model whose outputs are known in advance."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.cli.main import main
from app.model.bundle import MANIFEST_FILE, WEIGHTS_FILE, load_bundle, write_manifest

ImageFolderWriter = Callable[..., Path]
# Constant logits (0, 5, 0): square gets e^5/(e^5+2). On a folder that is half squares the NLL is
# lowest where that probability is 1/2, i.e. e^(5/T) = 2.
TEMPERATURE = 5 / math.log(2)


@pytest.fixture
def ood_folder(tmp_path: Path) -> Path:
    """Noise and gradient images, nested, of none of the classes."""
    rng = np.random.default_rng(0)
    nested = tmp_path / "ood" / "nested"
    nested.mkdir(parents=True)
    for i in range(3):
        noise = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
        Image.fromarray(noise).save(tmp_path / "ood" / f"noise_{i}.png")
        ramp = np.linspace(0, 255, 40, dtype=np.uint8)[None, :, None].repeat(40, 0).repeat(3, 2)
        Image.fromarray(np.ascontiguousarray(ramp)).save(nested / f"gradient_{i}.png")
    return tmp_path / "ood"


def test_calibrate_stores_temperature_and_threshold_and_leaves_the_weights(
    always_square: Path,
    tmp_path: Path,
    write_images: ImageFolderWriter,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder = write_images(tmp_path / "held-out", {"circle": 2, "square": 4, "ring": 2})
    weights_before = (always_square / WEIGHTS_FILE).read_bytes()
    argv = ["calibrate", str(always_square), str(folder), "--device", "cpu", "--workers", "0"]
    assert main([*argv, "--target-recall", "0.9"]) == 0
    out = capsys.readouterr().out
    assert "accuracy: 50.00%" in out
    assert f"wrote {always_square / MANIFEST_FILE}" in out

    calibration = load_bundle(always_square).manifest.calibration  # sha256 still valid
    assert calibration is not None
    assert calibration.temperature == pytest.approx(TEMPERATURE, rel=1e-4)
    # Every correct answer now scores 1/2, so the threshold keeping 90% of them is 1/2.
    assert calibration.abstain_threshold == pytest.approx(0.5, abs=1e-4)
    assert calibration.target_recall == 0.9
    assert calibration.fitted_on == str(folder)
    assert (always_square / WEIGHTS_FILE).read_bytes() == weights_before
    ece_line = next(line for line in out.splitlines() if line.startswith("calibration on 8"))
    # Before: confidence e^5/(e^5+2) = 0.987 at 50% accuracy; after: 0.5 at 50%.
    assert "ECE 0.4867 before, 0.0000 after" in ece_line


def test_evaluate_reports_served_ece_and_ood_separation(
    always_square: Path,
    tmp_path: Path,
    write_images: ImageFolderWriter,
    ood_folder: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder = write_images(tmp_path / "eval", {"circle": 1, "square": 2, "ring": 1})
    argv = ["evaluate", str(always_square), str(folder), "--device", "cpu", "--workers", "0"]
    assert main([*argv, "--ood", str(ood_folder), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    confidence = math.exp(5) / (math.exp(5) + 2)
    assert report["ece"] == pytest.approx(confidence - 0.5, abs=1e-4)
    assert report["temperature"] == 1.0
    ood = report["ood"]
    assert ood["images"] == 6  # nested folders included
    # Identical outputs for every image: neither score separates anything.
    assert ood["msp_auroc"] == pytest.approx(0.5)
    assert ood["energy_auroc"] == pytest.approx(0.5)
    assert ood["abstain_threshold"] == 0.0  # uncalibrated: never abstains
    assert ood["abstain_rate_ood"] == 0.0

    assert main([*argv, "--ood", str(ood_folder)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "out-of-distribution: 6 images in " + str(ood_folder) in lines
    assert "  AUROC in-class vs OOD, max softmax probability: 0.5000" in lines
    assert (
        "  abstain rate (top score below 0.0000 or an abstain label): 0.0% of OOD, 0.0% of in-class"
        in lines
    )


def test_calibrate_on_classes_the_bundle_lacks_is_one_error_line(
    always_square: Path,
    tmp_path: Path,
    write_images: ImageFolderWriter,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder = write_images(tmp_path / "other", {"star": 2, "square": 2})
    argv = ["calibrate", str(always_square), str(folder), "--device", "cpu", "--workers", "0"]
    assert main(argv) == 2
    assert "error:" in capsys.readouterr().err
    assert load_bundle(always_square).manifest.calibration is None


def test_evaluate_counts_an_abstain_label_as_served_and_scores_the_other_labels(
    always_square: Path,
    tmp_path: Path,
    write_images: ImageFolderWriter,
    ood_folder: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """With square as the bundle's "none of these" class every answer (always square) abstains,
    threshold or not; the AUROC looks at the other labels' scores, equal everywhere here."""
    manifest = load_bundle(always_square).manifest
    write_manifest(always_square, manifest.model_copy(update={"abstain_labels": ["square"]}))
    folder = write_images(tmp_path / "eval", {"circle": 1, "square": 2, "ring": 1})
    argv = ["evaluate", str(always_square), str(folder), "--device", "cpu", "--workers", "0"]
    assert main([*argv, "--ood", str(ood_folder), "--json"]) == 0
    ood = json.loads(capsys.readouterr().out)["ood"]
    assert ood["abstain_threshold"] == 0.0
    assert (ood["abstain_rate_ood"], ood["abstain_rate_in_class"]) == (1.0, 1.0)
    assert ood["msp_auroc"] == pytest.approx(0.5)
