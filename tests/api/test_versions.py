"""Versions that go live without a failed request: poll mode over a folder of numbered versions.

32 clients keep the server busy while a new version is written beside and renamed into place, and
while a broken one is: every request is answered 200, the new version serves once it is warm, the
broken one is refused and counted while the served one goes on.
"""

from __future__ import annotations

import asyncio
import base64
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.conftest import DEMO_BUNDLE, ServerProcess, encode, known_image, write_bundle
from tests.waiting import wait_for

CLIENTS = 32
IMAGE = encode(known_image("star", 0))
BODY = {
    "inputs": [
        {
            "name": "IMAGE",
            "shape": [1],
            "datatype": "BYTES",
            "data": [base64.b64encode(IMAGE).decode()],
        }
    ]
}


def _publish(model_dir: Path, version: int, corrupt: bool = False) -> None:
    """A version written beside and renamed into place, as ``finetune --out`` does."""
    staging = model_dir / f".{version}.partial"
    shutil.copytree(DEMO_BUNDLE, staging)
    if corrupt:  # the weights no longer match the manifest's sha256
        weights = next(staging.glob("*.safetensors"))
        weights.write_bytes(weights.read_bytes()[:-64] + bytes(64))
    staging.rename(model_dir / str(version))


def _publish_relabelled(scratch: Path, model_dir: Path, version: int) -> None:
    staging = write_bundle(scratch / "relabelled" / "demo", ["a", "b", "c"], input_size=32)
    staging.rename(model_dir / str(version))


@dataclass
class Load:
    """What the clients saw: (time sent, seconds, status, model_version) per request."""

    answers: list[tuple[float, float, int, str | None]] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def client(self, http: httpx.AsyncClient) -> None:
        while not self.stop.is_set():
            sent = time.monotonic()
            response = await http.post("/v2/models/demo/infer", json=BODY)
            version = response.json().get("model_version") if response.status_code == 200 else None
            self.answers.append((sent, time.monotonic() - sent, response.status_code, version))

    def p99_ms(self, since: float, until: float) -> float:
        latencies = sorted(s for sent, s, *_ in self.answers if since <= sent < until)
        if not latencies:
            return float("nan")  # a window shorter than any request
        return 1000 * latencies[round(0.99 * (len(latencies) - 1))]


def _served_version(server: ServerProcess) -> str:
    return server.get("/v2/models/demo").json()["versions"][0]


def _counter(server: ServerProcess, name: str) -> float:
    return server.metrics().get(name, {}).get((("model", "demo"),), 0.0)


def test_new_versions_go_live_under_load_and_broken_ones_are_refused(
    start_server, tmp_path: Path
) -> None:
    model_dir = tmp_path / "demo"
    model_dir.mkdir()
    _publish(model_dir, 1)
    server = start_server(model_dir=model_dir, model_poll_s=0.2, max_batch_size=8).wait_ready()
    assert _served_version(server) == "1"
    load = Load()
    marks: dict[str, float] = {}

    async def scenario() -> None:
        limits = httpx.Limits(max_connections=CLIENTS)
        async with httpx.AsyncClient(base_url=server.url, timeout=60, limits=limits) as http:
            clients = [asyncio.create_task(load.client(http)) for _ in range(CLIENTS)]
            await asyncio.sleep(3)  # p99 before any swap
            marks["swap"] = time.monotonic()
            await asyncio.to_thread(_publish, model_dir, 2)
            await asyncio.to_thread(
                wait_for, lambda: _served_version(server) == "2", 60, "version 2 served"
            )
            marks["swapped"] = time.monotonic()
            await asyncio.sleep(1)
            marks["broken"] = time.monotonic()
            await asyncio.to_thread(_publish, model_dir, 3, True)
            await asyncio.to_thread(
                wait_for,
                lambda: _counter(server, "resnet_serve_model_version_refusals_total") == 1,
                60,
                "version 3 refused",
            )
            marks["refused"] = time.monotonic()
            # a bundle of the same name whose labels change in number: refused too
            await asyncio.to_thread(_publish_relabelled, tmp_path, model_dir, 4)
            await asyncio.to_thread(
                wait_for,
                lambda: _counter(server, "resnet_serve_model_version_refusals_total") == 2,
                60,
                "version 4 refused",
            )
            await asyncio.sleep(1)
            load.stop.set()
            await asyncio.gather(*clients)

    asyncio.run(scenario())
    statuses = [status for _, _, status, _ in load.answers]
    assert statuses and set(statuses) == {200}, {s: statuses.count(s) for s in set(statuses)}
    versions = [version for *_, version in load.answers]
    assert versions[0] == "1" and versions[-1] == "2" and set(versions) == {"1", "2"}
    assert _served_version(server) == "2"
    assert server.get("/model").json()["version"] == "2"
    assert _counter(server, "resnet_serve_model_version_swaps_total") == 1
    logs = server.logs()
    assert "refused demo version 3 (still serving version 2)" in logs
    assert "refused demo version 4 (still serving version 2): its 3 labels replace 9" in logs
    before = load.p99_ms(0, marks["swap"])
    during = load.p99_ms(marks["swap"], marks["swapped"])
    broken = load.p99_ms(marks["broken"], marks["refused"])
    print(
        f"\n{len(statuses)} requests, all 200; p99 before {before:.0f} ms, during the swap "
        f"{during:.0f} ms, during the refused version {broken:.0f} ms"
    )
    info = server.metrics()["resnet_serve_model_info"]
    assert [dict(labels)["version"] for labels in info] == ["2"]
