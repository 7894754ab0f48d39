"""Model faults on a real server: a failing batch, a CUDA out-of-memory split, a stuck batch, and
a second SIGTERM that ends a drain at once."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.api.faulty_server import WARMUP_FAILURE
from tests.conftest import DEMO_BUNDLE, ServerProcess, encode, known_image
from tests.waiting import wait_for, wait_for_async

BLACK = encode(Image.new("RGB", (64, 64)), "PNG")  # the cue for tests/api/faulty_server.py
JPEG = encode(known_image("circle", 0))


@pytest.fixture
def start_faulty(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    servers: list[ServerProcess] = []

    def start(fault: str, **settings: object) -> ServerProcess:
        env = {f"RESNET_SERVE_{k.upper()}": str(v) for k, v in settings.items()}
        env |= {"FAULT": fault, "RESNET_SERVE_MODEL_DIR": str(DEMO_BUNDLE)}
        command = [sys.executable, "-m", "tests.api.faulty_server"]
        server = ServerProcess(env, tmp_path / f"faulty-{len(servers)}.log", command=command)
        servers.append(server.start())
        return server

    yield start
    for server in servers:
        server.stop()


def _listening(server: ServerProcess) -> bool:
    try:
        server.get("/health/live")
    except httpx.TransportError:
        return False
    return True


def _post(server: ServerProcess, image: bytes, timeout: float = 30) -> httpx.Response:
    files = {"file": ("image", image, "application/octet-stream")}
    return httpx.post(server.url + "/predict", files=files, timeout=timeout)


async def _posts(url: str, images: list[bytes]) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        return await asyncio.gather(
            *(
                client.post("/predict", files={"file": ("image", i, "application/octet-stream")})
                for i in images
            )
        )


def test_a_failed_warm_up_fails_liveness_without_telling_probes_its_internals(
    start_faulty,
) -> None:
    server = start_faulty("warmup", max_batch_size=1)
    server.wait_until("/health/live", 503)
    live = server.get("/health/live").json()
    assert live == {
        "status": "failed",
        "reason": "warm-up failed (RuntimeError); the server log has why",
    }
    assert server.get("/health/ready").status_code == 503
    assert server.get("/v2/health/live").status_code == 503
    assert WARMUP_FAILURE in server.logs()


def test_a_failing_batch_answers_500_without_internals_and_the_next_batch_is_served(
    start_faulty,
) -> None:
    server = start_faulty("fail", max_batch_size=4).wait_ready()
    failed = _post(server, BLACK)
    assert failed.status_code == 500
    error = failed.json()["error"]
    assert error["code"] == "inference_failed"
    assert failed.headers["x-request-id"] in error["message"]
    assert "simulated" not in error["message"]
    assert _post(server, JPEG).status_code == 200
    assert "simulated failure of a forward pass" in server.logs()  # the cause is in the log


def test_out_of_memory_splits_the_batch_and_every_request_is_answered(start_faulty) -> None:
    server = start_faulty("oom", max_batch_size=8, max_batch_delay_ms=300).wait_ready()
    responses = asyncio.run(_posts(server.url, [BLACK, JPEG] * 4))
    assert [r.status_code for r in responses] == [200] * 8
    circles = [r.json()["results"][0]["predictions"][0]["label"] for r in responses[1::2]]
    assert circles == ["circle"] * 4
    assert "retrying as two halves" in server.logs()


def test_a_stuck_batch_gets_504_at_the_deadline_fails_both_liveness_probes_and_exits_on_signals(
    start_faulty,
) -> None:
    server = start_faulty("stuck", request_timeout_s=1.5, max_batch_size=1).wait_ready()
    started = time.monotonic()
    stuck = _post(server, BLACK)
    elapsed = time.monotonic() - started
    assert stuck.status_code == 504
    assert stuck.json()["error"]["code"] == "deadline_exceeded"
    assert 1.4 < elapsed < 2.5  # at the deadline, not later
    server.wait_until("/health/live", 503, timeout_s=15)  # after 10 s: a restart is the only cure
    assert server.get("/health/live").json()["status"] == "stuck"
    assert server.get("/health/ready").status_code == 503
    # The Open Inference Protocol's probes (what KServe checks) agree.
    assert server.get("/v2/health/live").status_code == 503
    assert server.get("/v2/health/ready").status_code == 503
    started = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    # The second signal only once the first is handled (two at once may arrive as one): with
    # nothing in flight the drain ends at once and the listener closes, while the shutdown still
    # waits for the hung thread.
    wait_for(lambda: not _listening(server), 10, "the first SIGTERM handled", detail=server.logs)
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(20) == 0
    assert time.monotonic() - started < 15
    assert "leaving it behind" in server.logs()


def test_a_second_sigterm_ends_the_drain_at_once_and_answers_every_request(
    start_server, slow_bundle: Path
) -> None:
    server = start_server(model_dir=slow_bundle, max_batch_size=1, drain_timeout_s=60).wait_ready()

    async def scenario() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            posts = [
                asyncio.create_task(
                    client.post("/predict", content=JPEG, headers={"Content-Type": "image/jpeg"})
                )
                for _ in range(20)
            ]

            async def health() -> dict:
                return (await client.get("/health")).json()

            async def admitted() -> bool:
                return (await health())["saturation"] >= 0.05

            async def draining() -> bool:
                return (await health())["status"] == "draining"

            await wait_for_async(admitted, 30, "work admitted")
            server.process.send_signal(signal.SIGTERM)
            # The second signal only once the first is handled: two at once may arrive as one.
            await wait_for_async(draining, 10, "the drain begun")
            server.process.send_signal(signal.SIGTERM)
            return await asyncio.gather(*posts)

    started = time.monotonic()
    responses = asyncio.run(scenario())
    assert server.process.wait(20) == 0
    assert time.monotonic() - started < 10  # not the 60 s drain timeout
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 503}, statuses
    assert 503 in statuses
    assert "second signal" in server.logs()
