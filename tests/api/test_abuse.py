"""Overload and hostile uploads against a real server: refusals at the door are fast, decoding is
bounded, fair and cancelled with its request, and every deadline holds."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.conftest import DEMO_BUNDLE, ServerProcess, encode, known_image
from tests.waiting import wait_for, wait_for_async

JPEG = encode(known_image("circle", 0))
TRICKLE_PAUSE_S = (
    0.1  # a trickling client's pace: one byte per pause, well inside the upload timeout
)


def _big_png(side: int = 4000) -> bytes:
    """16 MP that compress to about 200 KB: cheap to send, most of a second to decode."""
    return encode(Image.linear_gradient("L").resize((side, side)).convert("RGB"), "PNG")


BIG_PNG = _big_png()


def _files(*images: bytes) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [
        ("files", (f"{i}.img", image, "application/octet-stream")) for i, image in enumerate(images)
    ]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One decode thread, a 4-image budget of big PNGs per request, short upload and deadline."""
    env = {
        "RESNET_SERVE_MODEL_DIR": str(DEMO_BUNDLE),
        "RESNET_SERVE_MAX_BATCH_SIZE": "8",
        "RESNET_SERVE_DECODE_WORKERS": "1",
        "RESNET_SERVE_MAX_IMAGE_PIXELS": "20000000",
        "RESNET_SERVE_MAX_REQUEST_PIXELS": "70000000",
        "RESNET_SERVE_UPLOAD_TIMEOUT_S": "1",
        "RESNET_SERVE_REQUEST_TIMEOUT_S": "20",
    }
    server = ServerProcess(env, tmp_path_factory.mktemp("abuse") / "server.log").start()
    try:
        yield server.wait_ready()
    finally:
        server.stop()


def _saturation(server: ServerProcess) -> float:
    return server.get("/health").json()["saturation"]


def _wait_idle(server: ServerProcess, timeout_s: float = 10) -> None:
    wait_for(lambda: _saturation(server) == 0, timeout_s, "admitted work released")


def test_overload_is_refused_at_the_door_fast_and_every_admitted_request_succeeds(
    start_server, slow_bundle: Path
) -> None:
    server = start_server(
        model_dir=slow_bundle,
        max_batch_size=2,
        max_queue_size=4,
        max_images_per_request=2,
        max_requests_in_flight=4,
    ).wait_ready()

    async def flood() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            return await asyncio.gather(
                *(
                    client.post("/predict", content=JPEG, headers={"Content-Type": "image/jpeg"})
                    for _ in range(40)
                )
            )

    responses = asyncio.run(flood())
    statuses = [r.status_code for r in responses]
    assert set(statuses) == {200, 503}, statuses
    refused = [r for r in responses if r.status_code == 503]
    assert all(r.json()["error"]["code"] == "overloaded" for r in refused)
    assert all(int(r.headers["retry-after"]) >= 1 for r in refused)
    assert all(int(r.headers["retry-after-ms"]) >= 50 for r in refused)
    slowest_refusal = max(r.elapsed.total_seconds() for r in refused)
    fastest_answer = min(r.elapsed.total_seconds() for r in responses if r.status_code == 200)
    assert slowest_refusal < fastest_answer  # nobody waited to be told no
    assert server.get("/health").json()["saturation"] == 0
    assert (
        httpx.post(
            server.url + "/predict", content=JPEG, headers={"Content-Type": "image/jpeg"}
        ).status_code
        == 200
    )  # recovered at once
    # Counted, one by one, where the dashboard's overload panel reads them (a fresh server: from 0).
    metrics = server.metrics()
    assert metrics["resnet_serve_admission_refused_total"][()] == len(refused)
    assert server.rejections()["overloaded"] == len(refused)


def test_a_refused_request_keeps_its_connection_for_the_next_one(
    start_server, slow_bundle: Path
) -> None:
    server = start_server(model_dir=slow_bundle, max_batch_size=1, max_requests_in_flight=1)
    server.wait_ready()

    async def scenario() -> bytes:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            busy = asyncio.create_task(
                client.post("/predict", content=JPEG, headers={"Content-Type": "image/jpeg"})
            )

            async def full() -> bool:
                return (await client.get("/health")).json()["saturation"] >= 1

            await wait_for_async(full, 30, "the one request admitted")
            post = (
                b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
                b"Content-Length: %d\r\n\r\n" % len(JPEG)
            )
            infer = b'{"inputs": []}'
            infer_head = (
                b"POST /v2/models/demo/infer HTTP/1.1\r\nHost: x\r\n"
                b"Content-Length: %d\r\n\r\n" % len(infer)
            )
            with _raw_request(server, post + JPEG) as sock:
                refused = _read_response(sock)
                sock.sendall(infer_head + infer)
                refused_v2 = _read_response(sock)
                sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
                live = _read_response(sock)
            assert (await busy).status_code == 200
            return b"\n--\n".join([refused, refused_v2, live])

    refused, refused_v2, live = asyncio.run(scenario()).split(b"\n--\n")
    assert refused.startswith(b"HTTP/1.1 503 ")
    assert b'"code":"overloaded"' in refused and b"retry-after-ms: " in refused
    assert b"connection: close" not in refused.lower()
    # The Open Inference Protocol's shape under /v2, refused at the door all the same.
    assert refused_v2.startswith(b"HTTP/1.1 503 ")
    (message,) = json.loads(refused_v2.partition(b"\r\n\r\n")[2]).values()
    assert message.startswith("server is at capacity (1 requests are in flight")
    assert live.startswith(b"HTTP/1.1 200 ")


def test_request_over_its_decode_budget_is_413_before_any_decoding(server: ServerProcess) -> None:
    started = time.monotonic()
    response = httpx.post(
        server.url + "/predict", files=_files(*[BIG_PNG] * 5), timeout=30
    )  # 5 x 16 MP > 70 MP
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "decode_budget_exceeded"
    assert "80000000 pixels" in response.json()["error"]["message"]
    assert time.monotonic() - started < 0.5  # one decode alone takes longer


def test_a_bad_image_fails_its_request_at_once_and_its_other_images_are_dropped(
    server: ServerProcess,
) -> None:
    truncated = BIG_PNG[: len(BIG_PNG) // 3]  # a valid header: it fails only in the decoder
    started = time.monotonic()
    response = httpx.post(
        server.url + "/predict", files=_files(truncated, *[BIG_PNG] * 3), timeout=30
    )
    failed_after = time.monotonic() - started
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("files[0]")
    started = time.monotonic()
    follow_up = httpx.post(server.url + "/predict", files=_files(JPEG), timeout=30)
    assert follow_up.status_code == 200
    # Had the three big images been decoded anyway, the follow-up would have waited for them.
    assert failed_after + (time.monotonic() - started) < 1.5
    _wait_idle(server)


def test_a_request_of_big_images_does_not_hold_up_a_small_one(server: ServerProcess) -> None:
    async def scenario() -> tuple[float, float]:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:

            async def timed(files: list) -> float:
                started = time.monotonic()
                response = await client.post("/predict", files=files)
                assert response.status_code == 200, response.text
                return time.monotonic() - started

            big = asyncio.create_task(timed(_files(*[BIG_PNG] * 4)))
            await asyncio.to_thread(wait_for, lambda: _saturation(server) > 0, 30, "admitted")
            small = await timed(_files(JPEG))
            return await big, small

    big_s, small_s = asyncio.run(scenario())
    # Served first-come-first-served, the small one would wait for all four big decodes.
    assert small_s < big_s * 0.6, (big_s, small_s)


def test_a_client_that_leaves_mid_decode_releases_its_work(server: ServerProcess) -> None:
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(server.url + "/predict", files=_files(*[BIG_PNG] * 4), timeout=0.5)
    _wait_idle(server, timeout_s=2)  # at most the one image already decoding finishes
    started = time.monotonic()
    assert httpx.post(server.url + "/predict", files=_files(JPEG), timeout=30).status_code == 200
    assert time.monotonic() - started < 1.5


def _raw_request(server: ServerProcess, head: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.sendall(head)
    return sock


def _read_response(sock: socket.socket) -> bytes:
    """One whole response: its head, then as many body bytes as its Content-Length says."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length: *(\d+)", head)[1])
    while len(body) < length and (chunk := sock.recv(65536)):  # each recv bounded by its timeout
        body += chunk
    return head + b"\r\n\r\n" + body


def test_a_body_shorter_than_its_content_length_gets_408_at_the_upload_timeout(
    server: ServerProcess,
) -> None:
    head = (
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
        b"Content-Length: 5000\r\n\r\n"
    )
    started = time.monotonic()
    with _raw_request(server, head + JPEG[:100]) as sock:
        answer = _read_response(sock)
        assert sock.recv(1) == b""  # and the connection is closed
    elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b'"code":"upload_timeout"' in answer
    assert 0.9 < elapsed < 2.0


def test_a_body_trickling_in_gets_408_at_the_upload_timeout(server: ServerProcess) -> None:
    head = (
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
        b"Content-Length: 100000\r\n\r\n"
    )
    started = time.monotonic()
    with _raw_request(server, head) as sock:
        sock.settimeout(TRICKLE_PAUSE_S)  # the behaviour under test: a byte per pause, never enough
        answer = b""
        while not answer and time.monotonic() - started < 5:
            try:
                sock.sendall(b"\x00")
                answer = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:100]
    assert time.monotonic() - started < 2.0


def test_the_deadline_holds_over_a_slow_upload_with_504_at_the_deadline(start_server) -> None:
    server = start_server(request_timeout_s=1, upload_timeout_s=10, max_batch_size=2).wait_ready()
    head = (
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
        b"Content-Length: 5000\r\n\r\n"
    )
    started = time.monotonic()
    with _raw_request(server, head) as sock:
        answer = _read_response(sock)
    assert answer.startswith(b"HTTP/1.1 504 "), answer[:100]
    assert 0.9 < time.monotonic() - started < 1.8


def test_bodies_past_the_in_flight_byte_budget_are_refused_at_the_door(start_server) -> None:
    server = start_server(
        max_body_bytes=1_000_000,
        max_body_bytes_in_flight=1_500_000,
        upload_timeout_s=10,
        max_batch_size=1,  # a warm-up of one batch size: ready in a moment
    ).wait_ready()
    stalled_head = (
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
        b"Content-Length: 1000000\r\n\r\n"
    )
    with _raw_request(server, stalled_head):  # holds 1,000,000 bytes while it (never) uploads
        wait_for(lambda: _saturation(server) >= 0.6, 10, "the stalled upload admitted")
        refused = httpx.post(
            server.url + "/predict", content=bytes(600_000), headers={"Content-Type": "image/jpeg"}
        )
        assert refused.status_code == 503
        assert "bytes of request bodies are admitted" in refused.json()["error"]["message"]
        small = httpx.post(
            server.url + "/predict", content=JPEG, headers={"Content-Type": "image/jpeg"}
        )
        assert small.status_code == 200  # what still fits is served
    _wait_idle(server)
    big = httpx.post(
        server.url + "/predict", content=bytes(600_000), headers={"Content-Type": "image/jpeg"}
    )
    assert big.json()["error"]["code"] == "invalid_image"  # admitted once the budget is back
