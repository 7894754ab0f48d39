"""The CUDA paths: skipped on machines without a GPU (CI), run wherever one is present."""

from __future__ import annotations

import httpx
import pytest
import torch

from app.model.bundle import load_bundle
from app.preprocessing import decode_image, eval_transform
from app.runner import ModelRunner
from tests.conftest import DEMO_BUNDLE, encode, known_image

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
def test_cuda_runner_matches_the_cpu_model(precision: str) -> None:
    images = [encode(known_image(name, 300)) for name in ("circle", "star", "stripes")]
    bundle = load_bundle(DEMO_BUNDLE)
    transform = eval_transform(bundle.manifest.preprocessing)
    tensors = [transform(decode_image(data, 10**8)) for data in images]
    with torch.inference_mode():
        expected = torch.softmax(bundle.model(torch.stack(tensors)), dim=1)
    runner = ModelRunner.load(str(DEMO_BUNDLE), "cuda", precision)
    assert runner.memory_format is torch.channels_last
    got = torch.stack(runner.predict(tensors))
    tolerance = 1e-4 if precision == "fp32" else 2e-2
    torch.testing.assert_close(got, expected, atol=tolerance, rtol=0)
    assert got.argmax(1).tolist() == expected.argmax(1).tolist()


def test_server_on_cuda_reports_its_device_and_answers(start_server) -> None:
    server = start_server(device="cuda", precision="fp16").wait_ready()
    health = server.get("/health").json()
    assert health["device"] == "cuda:0"
    assert health["precision"] == "fp16"
    response = httpx.post(
        server.url + "/predict",
        content=encode(known_image("ring", 301)),
        headers={"Content-Type": "image/jpeg"},
    )
    assert response.json()["results"][0]["predictions"][0]["label"] == "ring"
