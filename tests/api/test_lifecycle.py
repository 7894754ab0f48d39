"""Start-up, readiness, overload, deadlines and SIGTERM drain, on real server processes."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest
import torch

from tests.conftest import ServerProcess, encode, known_image
from tests.waiting import wait_for, wait_for_async

JPEG = encode(known_image("circle", 0))


def _post(server: ServerProcess, **kwargs) -> httpx.Response:
    return httpx.post(
        server.url + "/predict",
        content=JPEG,
        headers={"Content-Type": "image/jpeg"},
        timeout=60,
        **kwargs,
    )


async def _concurrent_posts(url: str, count: int) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        return await asyncio.gather(
            *(
                client.post("/predict", content=JPEG, headers={"Content-Type": "image/jpeg"})
                for _ in range(count)
            )
        )


def in_flight_at_least(client: httpx.AsyncClient, count: int) -> Callable[[], Awaitable[bool]]:
    """A condition for ``wait_for_async``: at least ``count`` requests in flight on the server."""

    async def condition() -> bool:
        text = (await client.get("/metrics")).text
        found = re.search(r"^resnet_serve_requests_in_flight (\S+)$", text, re.M)
        return found is not None and float(found[1]) >= count

    return condition


def test_live_before_ready_during_warm_up(start_server, slow_bundle: Path) -> None:
    server = start_server(model_dir=slow_bundle, max_batch_size=6)
    server.wait_until("/health/live", 200)
    response = server.get("/health/ready")
    assert response.status_code == 503
    assert response.json()["status"] == "starting"
    assert response.json()["reason"] == "warming up"
    assert response.headers["retry-after"] == "1"
    error = _post(server)
    assert error.status_code == 503
    assert error.json()["error"]["code"] == "not_ready"
    assert (error.headers["retry-after"], error.headers["retry-after-ms"]) == ("1", "1000")
    server.wait_ready()
    assert _post(server).status_code == 200


def test_deadline_passed_while_queued_returns_504(start_server, slow_bundle: Path) -> None:
    server = start_server(
        model_dir=slow_bundle, max_batch_size=1, request_timeout_s=0.05
    ).wait_ready()
    responses = asyncio.run(_concurrent_posts(server.url, 3))
    assert [r.status_code for r in responses] == [504, 504, 504]
    assert responses[0].json()["error"]["code"] == "deadline_exceeded"
    assert server.get("/health/live").status_code == 200


def test_sigterm_under_load_answers_every_admitted_request_and_refuses_new_work_as_draining(
    start_server, slow_bundle: Path
) -> None:
    server = start_server(model_dir=slow_bundle, max_batch_size=2, drain_timeout_s=60).wait_ready()
    clients = 40

    async def scenario() -> tuple[list[httpx.Response], int, httpx.Response, float]:
        async with httpx.AsyncClient(base_url=server.url, timeout=120) as client:
            posts = [
                asyncio.create_task(
                    client.post("/predict", content=JPEG, headers={"Content-Type": "image/jpeg"})
                )
                for _ in range(clients)
            ]
            # Wait until most are admitted; 20 batches of two keep the server busy for seconds.
            await wait_for_async(in_flight_at_least(client, clients * 3 // 4), 30, "admitted")
            server.process.terminate()

            async def draining() -> bool:
                return (await client.get("/health/ready")).json()["status"] == "draining"

            await wait_for_async(draining, 10, "the drain begun")
            ready = (await client.get("/health/ready")).status_code
            refused = await client.post(
                "/predict", content=JPEG, headers={"Content-Type": "image/jpeg"}
            )
            draining = server.rejections()["draining"]
            return await asyncio.gather(*posts), ready, refused, draining

    responses, ready_while_draining, new_work_while_draining, draining = asyncio.run(scenario())
    statuses = [r.status_code for r in responses]
    # Requests that were still being uploaded when the signal came may be refused with 503;
    # every admitted one is answered, and none is lost or fails.
    assert set(statuses) <= {200, 503}
    assert statuses.count(200) >= clients * 3 // 4
    assert ready_while_draining == 503
    assert new_work_while_draining.status_code == 503
    assert new_work_while_draining.json()["error"]["code"] == "shutting_down"
    assert draining >= 1  # counted as a refusal while draining, not as a server still starting
    assert server.process.wait(30) == 0
    assert "stopped" in server.logs()


def test_drain_timeout_bounds_the_shutdown(start_server, slow_bundle: Path) -> None:
    server = start_server(model_dir=slow_bundle, max_batch_size=1, drain_timeout_s=0.5).wait_ready()

    async def scenario() -> list[httpx.Response | BaseException]:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            posts = [
                asyncio.create_task(
                    client.post("/predict", content=JPEG, headers={"Content-Type": "image/jpeg"})
                )
                for _ in range(20)
            ]
            await wait_for_async(in_flight_at_least(client, 10), 30, "ten admitted")
            server.process.terminate()
            return await asyncio.gather(*posts, return_exceptions=True)

    started = time.monotonic()
    responses = asyncio.run(scenario())
    assert server.process.wait(30) == 0
    assert time.monotonic() - started < 15
    answered = [r for r in responses if isinstance(r, httpx.Response)]
    assert all(r.status_code in (200, 503) for r in answered), [
        (r.status_code, r.text[:80]) for r in answered if r.status_code not in (200, 503)
    ]


def test_broken_bundle_fails_start_up_with_one_clear_message(start_server, tmp_path: Path) -> None:
    (tmp_path / "model.json").write_text(json.dumps({"format_version": 1, "name": "x"}))
    server = start_server(model_dir=tmp_path)
    assert server.process.wait(60) != 0
    assert "model.json" in server.logs()
    with pytest.raises(httpx.TransportError):
        server.get("/health/live")


def test_missing_device_fails_start_up(start_server) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    server = start_server(device="cuda")
    assert server.process.wait(60) != 0
    assert "CUDA is not available" in server.logs()


def test_invalid_setting_fails_start_up(start_server) -> None:
    server = start_server(max_batch_size=0)
    assert server.process.wait(60) != 0
    assert "max_batch_size" in server.logs()


def test_sigterm_during_warm_up_exits_without_finishing_it(start_server, slow_bundle: Path) -> None:
    server = start_server(model_dir=slow_bundle, max_batch_size=32)  # minutes of warm-up on CPU
    server.wait_until("/health/live", 200)
    started = time.monotonic()
    assert server.terminate() == 0
    assert time.monotonic() - started < 15
    assert "ready:" not in server.logs()


def test_client_that_goes_away_is_dropped_before_compute(start_server, slow_bundle: Path) -> None:
    server = start_server(model_dir=slow_bundle, max_batch_size=1).wait_ready()
    request = (
        f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/jpeg\r\n"
        f"Content-Length: {len(JPEG)}\r\n\r\n"
    ).encode() + JPEG

    async def scenario() -> httpx.Response:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            kept = asyncio.create_task(
                client.post("/predict", content=JPEG, headers={"Content-Type": "image/jpeg"})
            )
            await wait_for_async(in_flight_at_least(client, 1), 30, "the first admitted")
            for _ in range(3):  # queued behind the first, then hung up on
                _, writer = await asyncio.open_connection("127.0.0.1", server.port)
                writer.write(request)
                await writer.drain()
                await wait_for_async(in_flight_at_least(client, 2), 30, "one more admitted")
                writer.close()
                await writer.wait_closed()
            return await kept

    assert asyncio.run(scenario()).status_code == 200
    server.wait_until("/health/ready", 200)

    def metrics_with_three_499s() -> str:
        text = server.get("/metrics").text
        return text if 'status="499"} 3.0' in text else ""

    metrics = wait_for(metrics_with_three_499s, 10, "three requests counted as 499")
    # The three were never computed.
    assert 'resnet_serve_images_total{model="slow",version="1"} 1.0' in metrics
    assert "Exception in ASGI application" not in server.logs()
