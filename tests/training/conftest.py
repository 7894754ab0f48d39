"""Tiny image folders and fast fine-tuning settings shared by the training tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from app.model.resnet import build_resnet
from app.training.config import FinetuneConfig
from app.training.demo_data import render_image
from tests.conftest import write_bundle

ImageFolderWriter = Callable[..., Path]


def _write_image_folder(root: Path, per_class: dict[str, int], seed: int = 0) -> Path:
    """``root/<class>/<class>_<i>.png``: 40 x 40 demo shapes, ``per_class[class]`` of each.

    Square images keep every shape whole under the training crop, and decode in microseconds.
    """
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name, count in per_class.items():
        folder = root / name
        folder.mkdir(exist_ok=True)
        for index in range(count):
            render_image(name, rng, size=(40, 40)).save(folder / f"{name}_{index}.png")
    return root


@pytest.fixture
def write_images() -> ImageFolderWriter:
    """Writes a small labelled image folder: ``write_images(root, {"circle": 3, ...}, seed=0)``."""
    return _write_image_folder


@pytest.fixture
def tiny_data(tmp_path: Path) -> Path:
    """Three classes of eight images: enough for a stratified split and two batches."""
    return _write_image_folder(tmp_path / "data", {"circle": 8, "stripes": 8, "checkerboard": 8})


@pytest.fixture
def always_square(tmp_path: Path) -> Path:
    """Constant logits (0, 5, 0): a bundle for circle, square, ring whose zero head weights and bias make it always say square."""
    model = build_resnet("resnet18", num_classes=3)
    with torch.no_grad():
        model.fc.weight.zero_()
        model.fc.bias.copy_(torch.tensor([0.0, 5.0, 0.0]))
    labels = ["circle", "square", "ring"]
    return write_bundle(
        tmp_path / "always-square", labels, model=model, weights_dtype=torch.float16
    )


@pytest.fixture
def fast_config(tmp_path: Path) -> Callable[..., FinetuneConfig]:
    """FinetuneConfig factory for seconds-long CPU runs: ResNet-18 at 32 px, one epoch."""

    def make(data: Path, **overrides: Any) -> FinetuneConfig:
        settings: dict[str, Any] = {
            "data": data,
            "out": tmp_path / "bundle",
            "input_size": 32,
            "resize_size": 32,
            "epochs": 1,
            "batch_size": 8,
            "workers": 0,
            "device": "cpu",
            "progress": False,
            "checkpoint_dir": tmp_path / "checkpoints",
            "force": True,  # the factory's runs share one --out folder
        }
        return FinetuneConfig(**(settings | overrides))

    return make
