"""Floods spread over many requests: twenty clients with one 40 MP image each, against a real
server on one decode thread, must not hold up a small request for long.

Served first come, first served, the small request waited for every large decode queued before
it (4.7 s for twenty /predict on two cores); /explain counted its bound only after upload and
decoding, so all twenty reached the decode pool.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from PIL import Image

from tests.conftest import ServerProcess, encode, known_image, ready_server
from tests.waiting import wait_for_async

FLOOD = 20
SIDE = 6324  # 39.99 MP: just under the default MAX_IMAGE_PIXELS; half a second to decode here
SMALL_LIMIT_S = 1.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from ready_server(
        tmp_path_factory.mktemp("fairness"),
        max_batch_size=8,
        decode_workers=1,
        request_timeout_s=30,
    )


@pytest.fixture(scope="module")
def large_png() -> bytes:
    """40 MP that compress to about 140 KB: cheap to send, half a second to decode."""
    return encode(Image.linear_gradient("L").resize((SIDE, SIDE)).convert("RGB"), "PNG")


def _flood_then_time_a_small_predict(
    server: ServerProcess, path: str, large: bytes, flood_in: Callable[[int, float], bool]
) -> tuple[float, list[int]]:
    """Send ``FLOOD`` large images to ``path`` at once, then, once ``flood_in(answered, saturation)``
    says the admitted are decoding, a small /predict: its seconds, and the flood's status codes."""

    async def scenario() -> tuple[float, list[int]]:
        limits = httpx.Limits(max_connections=FLOOD + 2)
        async with httpx.AsyncClient(base_url=server.url, timeout=60, limits=limits) as client:
            files = {"file": ("large.png", large, "image/png")}
            flood = [asyncio.create_task(client.post(path, files=files)) for _ in range(FLOOD)]

            async def admitted_are_decoding() -> bool:
                saturation = (await client.get("/health")).json()["saturation"]
                return flood_in(sum(task.done() for task in flood), saturation)

            await wait_for_async(admitted_are_decoding, 20, "the flood admitted and refused")
            small = encode(known_image("ring", 7))
            started = time.monotonic()
            response = await client.post("/predict", files={"file": ("s.jpg", small, "image/jpeg")})
            seconds = time.monotonic() - started
            assert response.status_code == 200, response.text
            assert response.json()["results"][0]["predictions"][0]["label"] == "ring"
            return seconds, [r.status_code for r in await asyncio.gather(*flood)]

    return asyncio.run(scenario())


def test_a_small_predict_is_not_queued_behind_twenty_large_predicts(
    server: ServerProcess, large_png: bytes
) -> None:
    seconds, statuses = _flood_then_time_a_small_predict(
        server, "/predict", large_png, lambda answered, saturation: saturation >= 0.99
    )
    assert seconds < SMALL_LIMIT_S, seconds
    # The decode budget (MAX_DECODE_PIXELS, 400 MP) holds ten at once (the budget full:
    # saturation 1); the rest are refused with 503, or admitted as the first ones finish.
    assert set(statuses) <= {200, 503} and statuses.count(200) >= 10


def test_a_flood_of_explanations_is_refused_at_the_door_not_after_decoding(
    server: ServerProcess, large_png: bytes
) -> None:
    seconds, statuses = _flood_then_time_a_small_predict(
        server,
        "/explain",
        large_png,
        lambda answered, saturation: answered >= FLOOD - 3 and saturation > 0,
    )
    assert seconds < SMALL_LIMIT_S, seconds
    # EXPLAIN_MAX_PENDING (3) counted from arrival: three explained, the rest 503 explain_busy.
    assert sorted(statuses) == [200] * 3 + [503] * (FLOOD - 3)
