"""The decode budgets charge what the decoder will really produce: nvJPEG has no draft mode."""

from __future__ import annotations

import asyncio
import io

import pytest
import torch
from PIL import Image

from app.model.bundle import load_bundle
from app.serving.builder import admission_gate, decode_workers
from app.serving.pipeline import DecodeBudgetError, InferencePipeline
from app.serving.runner import ModelRunner, RunnerOptions
from app.settings import Settings
from tests.conftest import DEMO_BUNDLE

# 2000x1500 = 3 MP at full size; Pillow's draft mode reads it at 1/8 for the demo's 112 px resize.
LARGE_JPEG_PIXELS = 2000 * 1500


def _large_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (2000, 1500), (200, 40, 90)).save(buffer, "JPEG")
    return buffer.getvalue()


def _prepare(gpu_decode: bool) -> list[torch.Tensor]:
    runner = ModelRunner(load_bundle(DEMO_BUNDLE), torch.device("cpu"), "fp32", RunnerOptions())
    # torchvision decodes JPEG lists on the CPU too: the nvJPEG decoder's logic runs here.
    settings = Settings(
        gpu_decode=gpu_decode, max_image_pixels=4_000_000, max_request_pixels=4_000_000
    )
    assert LARGE_JPEG_PIXELS < settings.max_request_pixels < 2 * LARGE_JPEG_PIXELS
    workers = decode_workers(settings)
    pipeline = InferencePipeline(runner, settings, admission_gate(settings), workers)

    async def prepare() -> list[torch.Tensor]:
        with pipeline.gate.admit(0) as ticket:
            return await pipeline.prepare_all([_large_jpeg(), _large_jpeg()], ticket)

    try:
        return asyncio.run(prepare())
    finally:
        workers.close()
        runner.close()


def test_draft_decoded_jpegs_are_charged_at_their_draft_size() -> None:
    assert [image.shape for image in _prepare(gpu_decode=False)] == [(3, 112, 112)] * 2


def test_gpu_decoded_jpegs_are_charged_at_full_size() -> None:
    with pytest.raises(DecodeBudgetError, match=f"need {2 * LARGE_JPEG_PIXELS} pixels"):
        _prepare(gpu_decode=True)
