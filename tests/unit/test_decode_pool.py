"""The decode pool: cheaper and older jobs first across requests, none starved, small images on
an express lane while every thread decodes a large one, cancelled jobs never run.

One regular thread. Each test holds threads busy with jobs that wait on a gate, so the order the
others start in is deterministic."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable

import pytest

from app.serving import decode_pool
from app.serving.decode_pool import FairDecodePool

LARGE, SMALL = 40_000_000, 200_000


async def _hold(pool: FairDecodePool, cost: int) -> tuple[threading.Event, Awaitable[bool]]:
    """A job of ``cost`` pixels that keeps its thread until the returned gate is set."""
    gate = threading.Event()
    holding = asyncio.ensure_future(pool.run(gate.wait, 5, cost=cost))
    await asyncio.sleep(0)  # one turn of the loop: `run` has handed the job to its thread
    return gate, holding


async def _order_on_the_regular_thread(pool: FairDecodePool, jobs: list[tuple[str, int]]) -> list:
    """Hold both lanes, queue ``jobs`` (name, cost) in order, then free the regular thread only:
    the names in the order it ran them."""
    regular_gate, regular = await _hold(pool, LARGE)
    express_gate, express = await _hold(pool, SMALL)
    ran: list[str] = []
    queued = [asyncio.ensure_future(pool.run(ran.append, name, cost=cost)) for name, cost in jobs]
    await asyncio.sleep(0)  # one turn of the loop: every job has reached the pool
    assert ran == [] and pool.waiting == len(jobs)  # nothing ran while the threads were held
    regular_gate.set()
    await asyncio.gather(regular, *queued)
    express_gate.set()
    await express
    return ran


def test_a_small_image_goes_ahead_of_large_ones_already_waiting() -> None:
    pool = FairDecodePool(1)
    jobs = [("large-1", LARGE), ("large-2", LARGE), ("large-3", LARGE), ("small", SMALL)]
    order = asyncio.run(_order_on_the_regular_thread(pool, jobs))
    assert order == ["small", "large-1", "large-2", "large-3"]
    pool.shutdown()


def test_a_large_image_passed_over_for_its_patience_goes_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # With almost no patience per pixel, due times are arrival times: first come, first served.
    monkeypatch.setattr(decode_pool, "PATIENCE_PIXELS_PER_S", 10**18)
    pool = FairDecodePool(1)
    jobs = [("large-1", LARGE), ("large-2", LARGE), ("small", SMALL)]
    order = asyncio.run(_order_on_the_regular_thread(pool, jobs))
    assert order == ["large-1", "large-2", "small"]
    pool.shutdown()


def test_a_small_image_takes_the_express_lane_while_every_thread_decodes_a_large_one() -> None:
    pool = FairDecodePool(1)

    async def scenario() -> None:
        gate, holding = await _hold(pool, LARGE)
        assert await pool.run(len, "small", cost=SMALL) == 5  # done while the thread is held
        large = asyncio.ensure_future(pool.run(len, "large", cost=LARGE))
        await asyncio.sleep(0)  # one turn of the loop: the job has reached the pool
        assert pool.waiting == 1  # a large image waits for a regular thread, not the express lane
        assert not large.done()
        gate.set()
        assert await large == 5 and await holding

    asyncio.run(scenario())
    pool.shutdown()


def test_a_job_cancelled_while_waiting_never_runs_and_results_and_errors_arrive() -> None:
    pool = FairDecodePool(1)

    async def scenario() -> list[str]:
        ran: list[str] = []
        gate, holding = await _hold(pool, LARGE)
        left = asyncio.ensure_future(pool.run(ran.append, "left", cost=LARGE))
        await asyncio.sleep(0)  # one turn of the loop: the job waits in the pool
        assert pool.waiting == 1
        left.cancel()
        gate.set()
        assert await holding is True
        assert await pool.run(len, "four", cost=LARGE) == 4
        with pytest.raises(ZeroDivisionError):
            await pool.run(divmod, 1, 0, cost=SMALL)
        return ran

    assert asyncio.run(scenario()) == []
    pool.shutdown()


def test_a_closed_pool_refuses_work_and_drops_what_waits() -> None:
    pool = FairDecodePool(1)

    async def scenario() -> None:
        gate, holding = await _hold(pool, LARGE)
        waiting = asyncio.ensure_future(pool.run(len, "x", cost=LARGE))
        await asyncio.sleep(0)  # one turn of the loop: the job waits in the pool
        assert pool.waiting == 1
        pool.shutdown()
        gate.set()
        assert await holding is True  # a running job finishes
        with pytest.raises(asyncio.CancelledError):
            await waiting
        with pytest.raises(RuntimeError, match="closed"):
            await pool.run(len, "x", cost=SMALL)

    asyncio.run(scenario())
