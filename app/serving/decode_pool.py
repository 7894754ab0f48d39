"""The decode threads, shared fairly by cost among concurrent requests.

A thread pool serves its queue first come, first served: twenty requests of one 40 MP image each,
queued ahead of a small one, made that one wait for all twenty decodes (4.7 s on two cores). Here
jobs wait in the pool's own queues and reach a thread only when one is free:

- A free thread takes the job that is due first, where a job is due at its arrival plus its cost
  in pixels at ``PATIENCE_PIXELS_PER_S``: a small image goes ahead of large ones already waiting,
  and a large one is passed over for at most its pixels at that rate (5 s for 40 MP), so a stream
  of small images cannot starve it.
- One more thread, the express lane, takes only small images (at most ``EXPRESS_PIXELS``, a few
  milliseconds of work each), and only while every regular thread is busy: a small image waits for
  no large decode at all, and the lane costs at most one core's worth of small decodes.
- A job cancelled before it started never runs.

Decode threads keep the default scheduling priority. At nice +10 a CPU forward pass beside a 40 MP
decode took 31 ms instead of 60-180 ms (its OpenMP team meets at a barrier after every layer), but
with the decoding of many small images starved during forward passes the service served 118
images/s at 32 clients instead of 192 on two cores: decoding and the forward pass must overlap.

With the per-request limit in ``InferencePipeline`` (one image per thread at a time), a request of
many images takes turns with the others too.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")
# How much longer a job may be passed over per pixel of it: 8 MP a second of patience.
PATIENCE_PIXELS_PER_S = 8_000_000
# A small image for the express lane: 2 MP (1600x1200), under 20 ms to decode and crop on one core.
EXPRESS_PIXELS = 2_000_000


@dataclass(order=True)
class _Job:
    due: float
    sequence: int  # first come first served among equal due times
    run: Callable[[], Any] = field(compare=False)
    result: asyncio.Future[Any] = field(compare=False)


class FairDecodePool:
    """``threads`` decode threads and an express lane for small images; ``run`` a function on one
    of them, the cheaper and older first."""

    def __init__(self, threads: int, thread_name_prefix: str = "decode") -> None:
        self.threads = threads
        self._executor = ThreadPoolExecutor(threads + 1, thread_name_prefix=thread_name_prefix)
        self._small: list[_Job] = []  # heaps by due time
        self._large: list[_Job] = []
        self._running = 0  # on the regular threads
        self._express_busy = False
        self._sequence = itertools.count()
        self._closed = False

    @property
    def waiting(self) -> int:
        """Jobs queued for a thread (cancelled ones included until a thread would take them)."""
        return len(self._small) + len(self._large)

    async def run(self, function: Callable[..., T], *args: Any, cost: int) -> T:
        """``function(*args)`` on a decode thread, ``cost`` pixels of work. Cancelling drops a job
        that has not started; one already running finishes on its thread."""
        if self._closed:
            raise RuntimeError("the decode pool is closed")
        loop = asyncio.get_running_loop()
        due = time.monotonic() + cost / PATIENCE_PIXELS_PER_S
        job = _Job(due, next(self._sequence), lambda: function(*args), loop.create_future())
        heapq.heappush(self._small if cost <= EXPRESS_PIXELS else self._large, job)
        self._dispatch()
        return await job.result

    def _dispatch(self) -> None:
        while self._running < self.threads and (job := self._next(self._small, self._large)):
            self._running += 1
            self._start(job, express=False)
        if not self._express_busy and (job := self._next(self._small)):
            self._express_busy = True
            self._start(job, express=True)

    @staticmethod
    def _next(*queues: list[_Job]) -> _Job | None:
        """The job due first at the heads of ``queues``; cancelled ones are dropped on the way."""
        for queue in queues:
            while queue and queue[0].result.done():  # its caller left before a thread was free
                heapq.heappop(queue)
        heads = [queue for queue in queues if queue]
        return heapq.heappop(min(heads, key=lambda queue: queue[0])) if heads else None

    def _start(self, job: _Job, express: bool) -> None:
        started = asyncio.wrap_future(self._executor.submit(job.run))
        started.add_done_callback(lambda done: self._finished(job, done, express))

    def _finished(self, job: _Job, done: asyncio.Future[Any], express: bool) -> None:
        if express:
            self._express_busy = False
        else:
            self._running -= 1
        # Read even when nobody waits any more, so that asyncio does not log it as unretrieved.
        error = None if done.cancelled() else done.exception()
        if not job.result.done():
            if done.cancelled():
                job.result.cancel()
            elif error is not None:
                job.result.set_exception(error)
            else:
                job.result.set_result(done.result())
        if not self._closed:
            self._dispatch()

    def shutdown(self) -> None:
        """Drop the waiting jobs and let the running ones finish on their threads."""
        self._closed = True
        for job in [*self._small, *self._large]:
            job.result.cancel()
        self._small.clear()
        self._large.clear()
        self._executor.shutdown(wait=False, cancel_futures=True)
