"""RESNET_SERVE_WORKERS: replicas of the service on one port, started and drained as one server."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from tests.conftest import encode, known_image
from tests.waiting import wait_for

IMAGES = [("circle", encode(known_image("circle", 7))), ("star", encode(known_image("star", 8)))]


def _replica_pids(pid: int) -> list[int]:
    """The server's child processes, less multiprocessing's resource tracker."""
    children = [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return [c for c in children if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]


async def _classify_concurrently(url: str, rounds: int) -> list[tuple[str, httpx.Response]]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:

        async def one(label: str, data: bytes) -> tuple[str, httpx.Response]:
            return label, await client.post("/predict", files={"file": ("x.jpg", data)})

        return await asyncio.gather(*(one(*image) for _ in range(rounds) for image in IMAGES))


def test_two_replicas_answer_on_one_port_and_drain_on_sigterm(start_server) -> None:
    server = start_server(workers=2, max_batch_size=4).wait_ready()
    replicas = _replica_pids(server.process.pid)
    assert len(replicas) == 2
    # The port answers once one is warm; wait for the other too.
    wait_for(
        lambda: server.alive() and server.logs().count("ready: warmed up") == 2,
        60,
        "both replicas warmed up",
        detail=server.logs,
    )

    for label, response in asyncio.run(_classify_concurrently(server.url, 6)):
        assert response.status_code == 200, response.text
        assert response.json()["results"][0]["predictions"][0]["label"] == label

    assert server.terminate() == 0
    assert not any(Path(f"/proc/{pid}").exists() for pid in replicas)
    assert server.logs().count("resnet_serve: stopped") == 2


def test_a_replica_that_cannot_start_stops_the_server_with_its_status(
    start_server, tmp_path: Path
) -> None:
    server = start_server(workers=2, model_dir=tmp_path / "missing")
    assert server.process.wait(120) == 3
    assert "bundle folder does not exist" in server.logs()


def test_replicas_do_not_outlive_a_killed_server(start_server) -> None:
    server = start_server(workers=2, max_batch_size=2).wait_ready()
    replicas = _replica_pids(server.process.pid)
    server.process.kill()
    server.process.wait()
    wait_for(
        lambda: not any(Path(f"/proc/{pid}").exists() for pid in replicas),
        30,
        "every replica gone after the server was killed",
    )


def test_sigterm_while_replicas_are_still_loading_is_a_clean_stop(start_server) -> None:
    server = start_server(workers=2, max_batch_size=2)
    server.wait_until("/health/live", 200)  # one replica is up; the other may still be loading
    assert server.terminate() == 0
