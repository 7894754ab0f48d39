"""Settings come from RESNET_SERVE_* variables and refuse unsafe values."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from app.settings import DEFAULT_MODEL_DIR, Settings


def test_defaults_serve_the_demo_model_on_port_8000(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("RESNET_SERVE_"):
            monkeypatch.delenv(name)
    settings = Settings()
    assert settings.port == 8000
    assert settings.model_dir == DEFAULT_MODEL_DIR
    assert DEFAULT_MODEL_DIR.parts[-2:] == ("models", "demo")
    assert settings.max_body_bytes == 10 * 1024 * 1024
    assert settings.max_images_per_request == 64


def test_environment_variables_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESNET_SERVE_MAX_BATCH_SIZE", "8")
    monkeypatch.setenv("RESNET_SERVE_DEVICE", "cuda:1")
    settings = Settings()
    assert settings.max_batch_size == 8
    assert settings.device == "cuda:1"


@pytest.mark.parametrize(
    "overrides",
    [
        {"device": "gpu"},
        {"max_batch_size": 0},
        {"port": 70000},
        {"precision": "int8"},
        {"max_queue_size": 4, "max_batch_size": 8},
        {"request_timeout_s": 0},
        {"max_image_pixels": 200_000_000},
        {"max_request_pixels": 500_000_000},
        {"log_format": "xml"},
    ],
)
def test_unsafe_values_are_refused(overrides: dict) -> None:
    with pytest.raises(ValidationError):
        Settings(**overrides)


def test_readme_documents_every_setting() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for name in Settings.model_fields:
        assert f"`RESNET_SERVE_{name.upper()}`" in readme


def test_abstain_labels_unset_leave_the_bundles_and_empty_means_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("RESNET_SERVE_ABSTAIN_LABELS", raising=False)
    assert Settings().abstain_label_names is None
    monkeypatch.setenv("RESNET_SERVE_ABSTAIN_LABELS", "")
    assert Settings().abstain_label_names == frozenset()
    assert Settings(abstain_labels=" clutter, star ,").abstain_label_names == {"clutter", "star"}
