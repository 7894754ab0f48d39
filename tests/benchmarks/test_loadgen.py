"""The closed loop against a stub server: exactly ``concurrency`` requests in flight, every answer counted."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from benchmarks.bodies import encode
from benchmarks.servers.process import free_port
from benchmarks.stats import LoadResult

web = pytest.importorskip("aiohttp.web", reason="the load generator needs the bench extra")
from benchmarks.loadgen import PLAN_LEAD_S, LoadPlan, closed_loop  # noqa: E402  (aiohttp)

CONCURRENCY = 4
STUB_SERVICE_S = 0.005  # the stub's own latency: what the p50 >= 5 ms below measures


async def _load_stub(plan_for: Callable[[str], LoadPlan]) -> tuple[LoadResult, dict[str, int]]:
    """Serve a stub that answers 503 to every fifth request, and load it with ``plan_for(url)``."""
    seen = {"requests": 0, "in_flight": 0, "most_in_flight": 0}

    async def predict(request: web.Request) -> web.Response:
        await request.read()
        seen["requests"] += 1
        seen["in_flight"] += 1
        seen["most_in_flight"] = max(seen["most_in_flight"], seen["in_flight"])
        await asyncio.sleep(STUB_SERVICE_S)  # the behaviour: a request in flight for a while
        seen["in_flight"] -= 1
        return web.Response(status=503 if seen["requests"] % 5 == 0 else 200, text="{}")

    app = web.Application()
    app.router.add_post("/predict", predict)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        return await closed_loop(plan_for(f"http://127.0.0.1:{port}")), seen
    finally:
        await runner.cleanup()


def test_closed_loop_keeps_concurrency_in_flight_and_counts_statuses() -> None:
    bodies = tuple(encode([b"one", b"two", b"three"], "raw"))

    def plan_for(url: str) -> LoadPlan:
        return LoadPlan(
            url, bodies, CONCURRENCY, warmup_s=0.3, duration_s=1.0, start_at=time.monotonic()
        )

    result, seen = asyncio.run(_load_stub(plan_for))
    summary = result.summary()

    assert seen["most_in_flight"] == CONCURRENCY
    assert 0 < sum(result.statuses.values()) < seen["requests"]  # the warm-up is not counted
    assert set(result.statuses) == {"200", "503"}
    assert summary["images_per_s"] == result.statuses["200"] / 1.0
    assert len(result.latencies_s) == result.statuses["200"]
    assert 1000 * STUB_SERVICE_S <= summary["p50_ms"] <= summary["p99_ms"] <= summary["max_ms"]
    # One request in five is refused: the p99 over every request sent is the client's timeout.
    assert summary["p99_sent_ms"] == 1000 * LoadPlan.timeout_s


def test_a_server_that_is_not_there_counts_as_conn_error() -> None:
    plan = LoadPlan(
        f"http://127.0.0.1:{free_port()}",
        tuple(encode([b"x"], "raw")),
        concurrency=2,
        warmup_s=0.1,
        duration_s=0.5,
        # A lead, as LoadGenerator gives its plans: on a busy machine the event loop, the session
        # and the resolver's first thread took longer than the whole window, and nothing counted.
        start_at=time.monotonic() + PLAN_LEAD_S,
    )

    result = asyncio.run(closed_loop(plan))

    assert set(result.statuses) == {"conn_error"}
    assert result.summary()["images_per_s"] == 0.0
