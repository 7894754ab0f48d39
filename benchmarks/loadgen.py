"""Closed-loop HTTP load: ``concurrency`` clients, each keeping exactly one request in flight.

Kept light so that on a small machine the client takes as little CPU from the server as possible:
aiohttp on uvloop, one keep-alive connection per client, bodies encoded once before the clock
starts (``benchmarks.bodies``), responses read but never parsed. Where one process cannot generate
enough load (a GPU host answering >10k requests/s) the clients are split across several processes
that measure the same window of the shared monotonic clock, and their results are merged.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, replace
from multiprocessing import get_context

import aiohttp
import uvloop

from benchmarks.bodies import EncodedBody
from benchmarks.stats import LoadResult

POOL_START_S = 0.5  # how long the pool's first jobs keep every process busy, so each one starts
PLAN_LEAD_S = 0.3  # from submitting a plan to its start: time to ship the bodies to the processes


@dataclass(frozen=True)
class LoadPlan:
    """One measured point: where to send what, how many at once, and when.

    ``start_at`` is a ``time.monotonic()`` value (the same clock in every process on Linux), set
    by ``LoadGenerator.submit``: the warm-up runs from it for ``warmup_s``, then the measured
    window for ``duration_s``.
    """

    url: str  # the server's, without a path: each body names its own
    bodies: tuple[EncodedBody, ...]
    concurrency: int
    warmup_s: float
    duration_s: float
    timeout_s: float = 60.0
    start_at: float = 0.0

    @property
    def window_start(self) -> float:
        return self.start_at + self.warmup_s

    @property
    def window_end(self) -> float:
        return self.window_start + self.duration_s


async def _sleep_until(moment: float) -> None:
    await asyncio.sleep(max(0.0, moment - time.monotonic()))


async def closed_loop(plan: LoadPlan, first_body: int = 0) -> LoadResult:
    """Drive ``plan`` from this process; returns what completed inside the measured window."""
    result = LoadResult(window_s=plan.duration_s)
    requests = [
        (plan.url + body.path, body.data, {"Content-Type": body.content_type, **dict(body.headers)})
        for body in plan.bodies
    ]
    connector = aiohttp.TCPConnector(limit=plan.concurrency)
    timeout = aiohttp.ClientTimeout(total=plan.timeout_s)

    async def client(session: aiohttp.ClientSession, turn: int) -> None:
        while True:
            url, data, headers = requests[turn % len(requests)]
            turn += 1
            sent = time.monotonic()
            started = time.perf_counter()
            try:
                async with session.post(url, data=data, headers=headers) as response:
                    await response.read()
                    status = str(response.status)
            except TimeoutError:
                status = "timeout"
            except aiohttp.ClientError:
                status = "conn_error"
            latency = time.perf_counter() - started
            finished = time.monotonic()
            if plan.window_start <= sent < plan.window_end:
                result.sent_latencies_s.append(latency if status == "200" else plan.timeout_s)
            if finished >= plan.window_end:
                return
            if finished >= plan.window_start:
                result.statuses[status] += 1
                if status == "200":
                    result.latencies_s.append(latency)

    async def client_cpu() -> None:
        await _sleep_until(plan.window_start)
        before = time.process_time()
        await _sleep_until(plan.window_end)
        result.client_cpu_s = time.process_time() - before

    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, cookie_jar=aiohttp.DummyCookieJar()
    ) as session:
        await _sleep_until(plan.start_at)
        if time.monotonic() >= plan.window_start:
            raise RuntimeError("the load process started after the measured window; raise --warmup")
        # Clients start on different images so they do not send the same bytes in lockstep.
        await asyncio.gather(
            client_cpu(), *(client(session, first_body + i) for i in range(plan.concurrency))
        )
    return result


def run_plan(plan: LoadPlan, first_body: int = 0) -> LoadResult:
    """``closed_loop`` on a fresh uvloop event loop (the entry point of each load process)."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(closed_loop(plan, first_body))


def _started() -> None:
    time.sleep(POOL_START_S)


class LoadGenerator:
    """A pool of load processes, started once and reused for every point of a run."""

    def __init__(self, processes: int) -> None:
        self.processes = processes
        # spawn, not fork: the parent has torch loaded, the load processes need only aiohttp.
        self._pool = ProcessPoolExecutor(processes, mp_context=get_context("spawn"))
        for started in [self._pool.submit(_started) for _ in range(processes)]:
            started.result()

    def submit(self, plan: LoadPlan) -> tuple[LoadPlan, list[Future[LoadResult]]]:
        """Start ``plan`` shortly from now with its clients split over the processes.

        Returns the plan with its start time (the caller samples the server at the window's
        edges) and one future per process, each resolving after the window.
        """
        plan = replace(plan, start_at=time.monotonic() + PLAN_LEAD_S)
        shares = [
            plan.concurrency // self.processes + (i < plan.concurrency % self.processes)
            for i in range(self.processes)
        ]
        futures, first_body = [], 0
        for share in filter(None, shares):
            share_plan = replace(plan, concurrency=share)
            futures.append(self._pool.submit(run_plan, share_plan, first_body))
            first_body += share
        return plan, futures

    def close(self) -> None:
        self._pool.shutdown(wait=True)
