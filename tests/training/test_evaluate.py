"""``resnet-serve evaluate``: exact metrics from a model whose predictions are known in advance."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from app.cli.main import main
from app.training.scores import ClassificationReport, confusion_matrix

ImageFolderWriter = Callable[..., Path]


def test_text_output_has_accuracy_precision_recall_and_matrix(
    always_square: Path,
    tmp_path: Path,
    write_images: ImageFolderWriter,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder = write_images(tmp_path / "eval", {"circle": 2, "square": 3, "ring": 1})
    assert (
        main(["evaluate", str(always_square), str(folder), "--device", "cpu", "--workers", "0"])
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert "accuracy: 50.00% (3/6 images)" in lines
    table = lines[lines.index("per-class precision and recall:") + 1 :]
    assert table[0].split() == ["class", "precision", "recall", "images"]
    assert table[1].split() == ["circle", "n/a", "0.00%", "2"]
    assert table[2].split() == ["square", "50.00%", "100.00%", "3"]
    assert table[3].split() == ["ring", "n/a", "0.00%", "1"]
    matrix = lines[
        lines.index("confusion matrix (rows: true class, columns: predicted class):") + 1 :
    ]
    assert [row.split()[-3:] for row in matrix[1:]] == [
        ["0", "2", "0"],
        ["0", "3", "0"],
        ["0", "1", "0"],
    ]


def test_json_output_is_machine_readable(
    always_square: Path,
    tmp_path: Path,
    write_images: ImageFolderWriter,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder = write_images(tmp_path / "eval", {"circle": 2, "square": 3})  # a subset is fine
    (folder / "circle" / "broken.png").write_bytes(b"\x89PNG garbage")
    argv = [
        "evaluate",
        str(always_square),
        str(folder),
        "--json",
        "--device",
        "cpu",
        "--workers",
        "0",
    ]
    assert main(argv) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert result["bundle"] == "always-square"
    assert result["accuracy"] == pytest.approx(0.6)
    assert (result["correct"], result["images"], result["skipped"]) == (3, 5, 1)
    assert result["per_class"]["square"] == {"precision": 0.6, "recall": 1.0, "images": 3}
    assert result["per_class"]["ring"] == {"precision": None, "recall": None, "images": 0}
    assert result["confusion_matrix"] == [[0, 2, 0], [0, 3, 0], [0, 0, 0]]
    assert "warning: " in captured.err and "broken.png" in captured.err


def test_folder_class_outside_the_labels_exits_2(
    always_square: Path,
    tmp_path: Path,
    write_images: ImageFolderWriter,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder = write_images(tmp_path / "other", {"circle": 1, "star": 1, "cross": 1})
    assert main(["evaluate", str(always_square), str(folder), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "['cross', 'star'] are not among the known classes" in err


def test_missing_bundle_exits_2_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["evaluate", str(tmp_path / "nope"), str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'nope'}: bundle folder does not exist\n"


def test_report_metrics_come_from_one_confusion_matrix() -> None:
    targets = torch.tensor([0, 0, 1, 1, 1, 2])
    predictions = torch.tensor([0, 1, 1, 1, 0, 2])
    matrix = confusion_matrix(targets, predictions, 3)
    assert matrix.tolist() == [[1, 1, 0], [1, 2, 0], [0, 0, 1]]
    report = ClassificationReport(("x", "y", "z"), matrix)
    assert report.accuracy == pytest.approx(4 / 6)
    rows = {row.label: row for row in report.per_class()}
    assert (rows["y"].precision, rows["y"].recall) == pytest.approx((2 / 3, 2 / 3))
    with pytest.raises(ValueError, match="does not fit 2 labels"):
        ClassificationReport(("x", "y"), matrix)
