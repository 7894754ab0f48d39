"""Dynamic batching of independent requests into one handler call.

The batcher knows nothing of HTTP or of the model: it queues items, gathers them into batches and
hands each batch to an async handler, so the transport and the runner can each be tested alone.
"""

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

In = TypeVar("In")
Out = TypeVar("Out")


class BatcherError(Exception):
    """Base class of every error the batcher raises itself."""


class QueueFullError(BatcherError):
    """The request would overflow the queue; nothing of it was enqueued."""


class DeadlineExceededError(BatcherError):
    """The request's timeout elapsed before all of its items finished."""


class BatcherClosedError(BatcherError):
    """The batcher is not running, or was stopped before the item finished."""


class BatchSizeMismatchError(BatcherError):
    """The handler returned a different number of outputs than it was given items."""


@dataclass(frozen=True, slots=True)
class BatchedResult(Generic[Out]):
    """One item's output with the timings a caller needs for metrics and logs."""

    value: Out
    batch_size: int
    queue_wait_s: float
    compute_s: float


@dataclass(slots=True)
class _Pending(Generic[In, Out]):
    item: In
    future: asyncio.Future[BatchedResult[Out]]
    enqueued_at: float


class DynamicBatcher(Generic[In, Out]):
    """Merge items from concurrent requests into batches, at most `max_batches_in_flight` at a time.

    A batch starts when `max_batch_size` items wait or when the oldest waiting item has waited
    `max_batch_delay_s`; with a delay of 0 whatever is waiting runs at once. Items that arrive while
    the in-flight slots are taken form the next batch, so batches grow with load without adding
    latency when idle. A second slot lets a GPU handler prepare one batch while another computes.

    If the handler raises, the futures of that batch get that same exception, unwrapped, so callers
    see the real cause; the consumer keeps serving the next batch.
    """

    def __init__(
        self,
        handler: Callable[[list[In]], Awaitable[Sequence[Out]]],
        *,
        max_batch_size: int,
        max_queue_size: int,
        max_batch_delay_s: float = 0.0,
        max_batches_in_flight: int = 1,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {max_batch_size}")
        if max_queue_size < 1:
            raise ValueError(f"max_queue_size must be at least 1, got {max_queue_size}")
        if not (math.isfinite(max_batch_delay_s) and max_batch_delay_s >= 0):
            raise ValueError(f"max_batch_delay_s must be finite and >= 0, got {max_batch_delay_s}")
        if max_batches_in_flight < 1:
            raise ValueError(
                f"max_batches_in_flight must be at least 1, got {max_batches_in_flight}"
            )
        self._handler = handler
        self._max_batch_size = max_batch_size
        self._max_queue_size = max_queue_size
        self._max_batch_delay_s = max_batch_delay_s
        self._queue: deque[_Pending[In, Out]] = deque()
        self._in_flight: dict[asyncio.Task[None], list[_Pending[In, Out]]] = {}
        self._batch_started: dict[asyncio.Task[None], float] = {}
        self._free_slots = asyncio.Semaphore(max_batches_in_flight)
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def queue_depth(self) -> int:
        """Items waiting for a batch, not counting the batch in flight."""
        return len(self._queue)

    @property
    def in_flight(self) -> int:
        """Items in the batches the handler is running now."""
        return sum(len(batch) for batch in self._in_flight.values())

    @property
    def longest_batch_s(self) -> float:
        """How long the oldest batch in flight has been running (0 when none is): a batch that
        outlives every request's deadline means the handler is stuck."""
        if not self._batch_started:
            return 0.0
        return time.monotonic() - min(self._batch_started.values())

    @property
    def accepting(self) -> bool:
        """Whether `submit` admits new work: started and not stopped."""
        return self._task is not None and not self._closed

    def start(self) -> None:
        """Spawn the consumer task on the running loop; call once, from inside that loop."""
        if self._task is not None or self._closed:
            raise RuntimeError("DynamicBatcher.start() may be called only once")
        self._task = asyncio.get_running_loop().create_task(self._consume(), name="dynamic-batcher")

    async def submit(
        self, items: Sequence[In], timeout_s: float | None = None
    ) -> list[BatchedResult[Out]]:
        """Run `items` through the handler and return their results in input order.

        The items are admitted all or nothing and may be spread over several batches. On timeout or
        cancellation the request's unfinished items are withdrawn, so they are never computed.
        """
        if not items:
            raise ValueError("submit() needs at least one item")
        if timeout_s is not None and not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0 or None, got {timeout_s}")
        if not self.accepting:
            raise BatcherClosedError("the batcher is not accepting work")
        if len(self._queue) + len(items) > self._max_queue_size:
            raise QueueFullError(
                f"{len(items)} items do not fit: {len(self._queue)} of "
                f"{self._max_queue_size} queue slots are taken"
            )
        loop = asyncio.get_running_loop()
        now = time.monotonic()  # not loop.time(): uvloop's clock ticks in whole milliseconds
        pending = [_Pending(item, loop.create_future(), now) for item in items]
        self._queue.extend(pending)
        self._wakeup.set()
        futures = [p.future for p in pending]
        deadline = asyncio.timeout(timeout_s)
        try:
            async with deadline:
                return list(await asyncio.gather(*futures))
        except TimeoutError as exc:
            if not deadline.expired():
                raise  # the handler's own TimeoutError, not our deadline
            raise DeadlineExceededError(f"request not finished within {timeout_s} s") from exc
        finally:
            # After a timeout, a cancellation or a failed sibling, withdraw what is left so it
            # neither reaches the handler nor holds queue slots.
            for future in futures:
                future.cancel()
            if any(future.cancelled() for future in futures):
                self._queue = deque(p for p in self._queue if not p.future.done())

    async def stop(self, drain_timeout_s: float) -> None:
        """Stop admitting, let queued and running items finish, then fail whatever is left.

        Queued and in-flight items get `drain_timeout_s` to complete; after that the consumer is
        cancelled and their callers get `BatcherClosedError`. A batch whose callers have all timed
        out or left is cancelled at once: a hung handler must not hold up the shutdown.
        """
        if not drain_timeout_s >= 0:
            raise ValueError(f"drain_timeout_s must be >= 0, got {drain_timeout_s}")
        self._closed = True
        self._wakeup.set()
        if self._task is None:
            return
        for task, batch in self._in_flight.items():
            if all(p.future.done() for p in batch):
                task.cancel()  # every caller has timed out or left: nobody waits for this batch
        _, still_running = await asyncio.wait({self._task}, timeout=drain_timeout_s)
        if not still_running:
            return
        # Taken before the cancel: cancelling the batches empties `_in_flight` on their way out.
        leftovers = [p for batch in self._in_flight.values() for p in batch] + [*self._queue]
        self._queue.clear()
        self._task.cancel()
        await asyncio.wait({self._task})
        for p in leftovers:
            if not p.future.done():
                p.future.set_exception(
                    BatcherClosedError("the batcher stopped before this item finished")
                )

    async def _consume(self) -> None:
        try:
            while True:
                while not self._queue:
                    if self._closed:
                        await asyncio.gather(*self._in_flight)
                        return
                    self._wakeup.clear()
                    await self._wakeup.wait()
                # The batch is taken only once a slot is free, so it keeps growing until then.
                await self._free_slots.acquire()
                await self._wait_for_window()
                batch = self._take_batch()
                if not batch:
                    self._free_slots.release()
                    continue
                task = asyncio.create_task(self._run_batch(batch))
                self._in_flight[task] = batch
                self._batch_started[task] = time.monotonic()
                task.add_done_callback(self._batch_done)
        finally:
            for task in self._in_flight:
                task.cancel()

    def _batch_done(self, task: asyncio.Task[None]) -> None:
        del self._in_flight[task]
        del self._batch_started[task]
        self._free_slots.release()

    async def _wait_for_window(self) -> None:
        """Wait until the batch is full or the oldest waiting item has waited the full delay."""
        while not self._closed and 0 < len(self._queue) < self._max_batch_size:
            # Re-anchored on every pass: if the oldest item was withdrawn, the next one's clock rules.
            remaining = self._queue[0].enqueued_at + self._max_batch_delay_s - time.monotonic()
            if remaining <= 0:
                return
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._wakeup.wait()

    def _take_batch(self) -> list[_Pending[In, Out]]:
        """Pop up to a full batch of live items; withdrawn ones are dropped and not counted."""
        batch: list[_Pending[In, Out]] = []
        while self._queue and len(batch) < self._max_batch_size:
            p = self._queue.popleft()
            if not p.future.done():
                batch.append(p)
        return batch

    async def _run_batch(self, batch: list[_Pending[In, Out]]) -> None:
        started = time.monotonic()
        try:
            outputs = await self._handler([p.item for p in batch])
            if len(outputs) != len(batch):
                raise BatchSizeMismatchError(
                    f"handler returned {len(outputs)} outputs for {len(batch)} items"
                )
        except Exception as exc:
            for p in batch:
                if not p.future.done():
                    p.future.set_exception(exc)
            return
        compute_s = time.monotonic() - started
        for p, value in zip(batch, outputs, strict=True):
            # A caller that timed out or went away has already cancelled its future.
            if not p.future.done():
                p.future.set_result(
                    BatchedResult(value, len(batch), started - p.enqueued_at, compute_s)
                )
