"""Concurrent clients are merged into batches without changing any answer."""

from __future__ import annotations

import asyncio

import httpx
import torch

from app.model.bundle import load_bundle
from app.model.preprocessing import decode_image, eval_transform
from app.training.demo_data import CLASSES
from tests.conftest import DEMO_BUNDLE, encode, known_image

CLIENTS = 64
REQUESTS_PER_CLIENT = 3


def _unbatched_probabilities(images: list[bytes]) -> list[torch.Tensor]:
    """What the model says about each image alone, in this process (JPEGs drafted as served)."""
    bundle = load_bundle(DEMO_BUNDLE)
    spec = bundle.manifest.preprocessing
    transform = eval_transform(spec)
    calibration = bundle.manifest.calibration
    temperature = calibration.temperature if calibration else 1.0  # served scores are calibrated
    with torch.inference_mode():
        return [
            torch.softmax(
                bundle.model(transform(decode_image(data, 10**8, spec.resize_size))[None])
                / temperature,
                dim=1,
            )[0]
            for data in images
        ]


async def _client(client: httpx.AsyncClient, client_id: int, images: list[bytes]) -> list[tuple]:
    answers = []
    for n in range(REQUESTS_PER_CLIENT):
        index = (client_id + n) % len(images)
        response = await client.post(
            "/predict?top_k=8",
            content=images[index],
            headers={"Content-Type": "image/jpeg", "X-Request-ID": f"c{client_id}-r{n}"},
        )
        answers.append((index, f"c{client_id}-r{n}", response))
    return answers


async def _load(url: str, images: list[bytes]) -> list[tuple]:
    limits = httpx.Limits(max_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        per_client = await asyncio.gather(*(_client(client, i, images) for i in range(CLIENTS)))
    return [answer for answers in per_client for answer in answers]


def test_concurrent_clients_are_batched_and_answers_match_unbatched_inference(start_server) -> None:
    server = start_server(max_batch_size=32).wait_ready()
    images = [encode(known_image(name, 100 + i)) for i, name in enumerate(CLASSES * 2)]
    expected = _unbatched_probabilities(images)

    answers = asyncio.run(_load(server.url, images))

    assert len(answers) == CLIENTS * REQUESTS_PER_CLIENT
    batch_sizes = []
    for index, request_id, response in answers:
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["request_id"] == request_id  # every answer reached the client that asked
        result = body["results"][0]
        batch_sizes.append(result["batch_size"])
        scores = torch.zeros_like(expected[index])
        for prediction in result["predictions"]:
            scores[prediction["index"]] = prediction["score"]
        torch.testing.assert_close(scores, expected[index], atol=1e-4, rtol=0)
        assert result["predictions"][0]["label"] == CLASSES[index % len(CLASSES)]
    assert max(batch_sizes) > 1
    assert sum(batch_sizes) / len(batch_sizes) > 1.5
    metrics = server.get("/metrics").text
    expected_count = CLIENTS * REQUESTS_PER_CLIENT
    assert (
        f'resnet_serve_requests_total{{route="/predict",status="200"}} {expected_count}.0'
        in metrics
    )
