"""DynamicBatcher behaviour, driven with asyncio.run and a handler the test can hold and release."""

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import pytest

from app.serving.batcher import (
    BatcherClosedError,
    BatcherError,
    BatchSizeMismatchError,
    DeadlineExceededError,
    DynamicBatcher,
    QueueFullError,
)
from tests.waiting import wait_for_async


class BoomError(Exception):
    pass


class FakeHandler:
    """Multiplies by 10, records every batch, and blocks until `release` is set when asked to."""

    def __init__(self, *, blocked: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.entered: asyncio.Queue[list[int]] = asyncio.Queue()
        self.release = asyncio.Event()
        if not blocked:
            self.release.set()

    async def __call__(self, items: list[int]) -> Sequence[int]:
        self.batches.append(list(items))
        self.entered.put_nowait(list(items))
        await self.release.wait()
        if -1 in items:
            raise BoomError("bad item")
        return [x * 10 for x in items]


def run(test: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run one test coroutine; the guard turns a hang into a fast failure."""

    async def guarded() -> None:
        async with asyncio.timeout(2):
            await test()

    asyncio.run(guarded())


async def until(condition: Callable[[], bool]) -> None:
    """Yield to the loop until `condition` holds: batcher state that its own tasks change, polled
    every turn of the loop (no 10 ms pauses inside the windows these tests measure), failing
    before the guard in `run` does."""

    async def holds() -> bool:
        return condition()

    await wait_for_async(holds, 1.5, "the batcher's state", interval_s=0)


def make(handler: FakeHandler, **kwargs: Any) -> DynamicBatcher[int, int]:
    options: dict[str, Any] = {"max_batch_size": 8, "max_queue_size": 64} | kwargs
    batcher: DynamicBatcher[int, int] = DynamicBatcher(handler, **options)
    batcher.start()
    return batcher


def values(results: Sequence[Any]) -> list[int]:
    return [r.value for r in results]


def test_submit_returns_results_in_input_order_with_batch_metadata() -> None:
    async def main() -> None:
        batcher = make(FakeHandler())
        results = await batcher.submit([3, 1, 2])
        assert values(results) == [30, 10, 20]
        assert [r.batch_size for r in results] == [3, 3, 3]
        assert all(r.queue_wait_s >= 0 and r.compute_s >= 0 for r in results)

    run(main)


def test_requests_arriving_during_a_running_batch_merge_into_the_next_batch() -> None:
    async def main() -> None:
        handler = FakeHandler(blocked=True)
        batcher = make(handler)
        first = asyncio.create_task(batcher.submit([1]))
        assert await handler.entered.get() == [1]
        second = asyncio.create_task(batcher.submit([2]))
        third = asyncio.create_task(batcher.submit([3, 4]))
        await until(lambda: batcher.queue_depth == 3)
        assert batcher.in_flight == 1
        assert not (first.done() or second.done() or third.done())

        handler.release.set()
        assert values(await first) == [10]
        second_results, third_results = await second, await third
        assert values(second_results) == [20]
        assert values(third_results) == [30, 40]
        assert [r.batch_size for r in (*second_results, *third_results)] == [3, 3, 3]
        assert handler.batches == [[1], [2, 3, 4]]

    run(main)


def test_max_batch_size_splits_one_request_across_batches_in_order() -> None:
    async def main() -> None:
        handler = FakeHandler()
        batcher = make(handler, max_batch_size=2)
        results = await batcher.submit([1, 2, 3, 4, 5])
        assert values(results) == [10, 20, 30, 40, 50]
        assert [r.batch_size for r in results] == [2, 2, 2, 2, 1]
        assert handler.batches == [[1, 2], [3, 4], [5]]

    run(main)


def test_delay_window_gathers_items_arriving_before_it_closes() -> None:
    async def main() -> None:
        handler = FakeHandler()
        batcher = make(handler, max_batch_delay_s=0.05)
        first = asyncio.create_task(batcher.submit([1]))
        await until(lambda: batcher.queue_depth == 1)
        await asyncio.sleep(0.01)  # the behaviour under test: time passes inside the 50 ms window
        assert handler.batches == []  # the window is still open
        second = await batcher.submit([2])
        first_results = await first
        assert handler.batches == [[1, 2]]
        assert second[0].batch_size == 2
        # The window is anchored at the first item's arrival, not stretched by the second.
        assert 0.05 <= first_results[0].queue_wait_s < 0.5

    run(main)


def test_full_batch_starts_without_waiting_for_the_delay_window() -> None:
    async def main() -> None:
        handler = FakeHandler()
        batcher = make(handler, max_batch_size=2, max_batch_delay_s=30.0)
        results = await batcher.submit([1, 2])  # a 30 s wait would trip the 2 s guard
        assert values(results) == [10, 20]
        assert handler.batches == [[1, 2]]

    run(main)


def test_zero_delay_runs_a_lone_item_at_once() -> None:
    async def main() -> None:
        handler = FakeHandler()
        batcher = make(handler, max_batch_size=8)
        results = await batcher.submit([7])
        assert values(results) == [70]
        assert results[0].batch_size == 1
        assert results[0].queue_wait_s < 0.1

    run(main)


def test_queue_full_rejects_the_whole_request_and_the_batcher_recovers() -> None:
    async def main() -> None:
        handler = FakeHandler(blocked=True)
        batcher = make(handler, max_batch_size=4, max_queue_size=3)
        first = asyncio.create_task(batcher.submit([1]))
        await handler.entered.get()  # in flight: no longer counted against the queue
        queued = asyncio.create_task(batcher.submit([2, 3]))
        await until(lambda: batcher.queue_depth == 2)

        with pytest.raises(QueueFullError):
            await batcher.submit([4, 5])
        assert batcher.queue_depth == 2  # all or nothing: neither item was admitted

        handler.release.set()
        assert values(await first) == [10]
        assert values(await queued) == [20, 30]
        assert values(await batcher.submit([6, 7, 8])) == [60, 70, 80]
        assert handler.batches == [[1], [2, 3], [6, 7, 8]]

    run(main)


def test_handler_exception_fails_only_its_batch_and_the_next_batch_succeeds() -> None:
    async def main() -> None:
        handler = FakeHandler(blocked=True)
        batcher = make(handler)
        blocker = asyncio.create_task(batcher.submit([0]))
        await handler.entered.get()
        bad = asyncio.create_task(batcher.submit([-1]))
        neighbour = asyncio.create_task(batcher.submit([5]))
        await until(lambda: batcher.queue_depth == 2)

        handler.release.set()
        assert values(await blocker) == [0]
        # The exception is delivered as raised, to every request in the failing batch.
        with pytest.raises(BoomError, match="bad item"):
            await bad
        with pytest.raises(BoomError):
            await neighbour
        assert values(await batcher.submit([6])) == [60]
        assert handler.batches == [[0], [-1, 5], [6]]

    run(main)


def test_handler_returning_wrong_number_of_outputs_fails_with_size_mismatch() -> None:
    async def short_by_one(items: list[int]) -> list[int]:
        return items[:-1]

    async def main() -> None:
        batcher: DynamicBatcher[int, int] = DynamicBatcher(
            short_by_one, max_batch_size=4, max_queue_size=4
        )
        batcher.start()
        with pytest.raises(BatchSizeMismatchError, match="1 outputs for 2 items"):
            await batcher.submit([1, 2])

    run(main)


def test_cancelled_request_is_withdrawn_from_the_queue_and_never_computed() -> None:
    async def main() -> None:
        handler = FakeHandler(blocked=True)
        batcher = make(handler)
        first = asyncio.create_task(batcher.submit([1]))
        await handler.entered.get()
        gone = asyncio.create_task(batcher.submit([2]))
        await until(lambda: batcher.queue_depth == 1)

        gone.cancel()
        with pytest.raises(asyncio.CancelledError):
            await gone
        assert batcher.queue_depth == 0  # its slot is free again

        later = asyncio.create_task(batcher.submit([3]))
        handler.release.set()
        assert values(await first) == [10]
        assert values(await later) == [30]
        assert handler.batches == [[1], [3]]

    run(main)


def test_batch_of_only_cancelled_items_never_reaches_the_handler() -> None:
    async def main() -> None:
        handler = FakeHandler(blocked=True)
        batcher = make(handler)
        first = asyncio.create_task(batcher.submit([1]))
        await handler.entered.get()
        gone = asyncio.create_task(batcher.submit([2]))
        await until(lambda: batcher.queue_depth == 1)

        # Same tick: the consumer takes the next batch before `gone` gets to clean up, so the
        # cancelled item is still queued and must be dropped when the batch is gathered.
        handler.release.set()
        gone.cancel()
        assert values(await first) == [10]
        with pytest.raises(asyncio.CancelledError):
            await gone
        assert values(await batcher.submit([3])) == [30]
        assert handler.batches == [[1], [3]]

    run(main)


def test_timeout_raises_deadline_exceeded_and_the_queued_item_is_never_computed() -> None:
    async def main() -> None:
        handler = FakeHandler(blocked=True)
        batcher = make(handler)
        first = asyncio.create_task(batcher.submit([1]))
        await handler.entered.get()

        with pytest.raises(DeadlineExceededError):
            await batcher.submit([2], timeout_s=0.01)
        assert batcher.queue_depth == 0

        handler.release.set()
        assert values(await first) == [10]
        assert values(await batcher.submit([3])) == [30]
        assert handler.batches == [[1], [3]]

    run(main)


def test_timeout_during_compute_leaves_the_consumer_serving() -> None:
    async def main() -> None:
        handler = FakeHandler(blocked=True)
        batcher = make(handler)
        with pytest.raises(DeadlineExceededError):
            await batcher.submit([1], timeout_s=0.01)
        assert batcher.in_flight == 1  # still computing; its result will find no taker

        handler.release.set()
        assert values(await batcher.submit([2])) == [20]
        assert handler.batches == [[1], [2]]

    run(main)


def test_handler_timeout_error_is_not_reported_as_a_deadline() -> None:
    async def times_out(items: list[int]) -> list[int]:
        raise TimeoutError("device stalled")

    async def main() -> None:
        batcher: DynamicBatcher[int, int] = DynamicBatcher(
            times_out, max_batch_size=4, max_queue_size=4
        )
        batcher.start()
        with pytest.raises(TimeoutError, match="device stalled") as caught:
            await batcher.submit([1], timeout_s=1.0)
        assert not isinstance(caught.value, DeadlineExceededError)

    run(main)


def test_stop_drains_queued_work_then_rejects_new_submits() -> None:
    async def main() -> None:
        handler = FakeHandler(blocked=True)
        batcher = make(handler)
        running = asyncio.create_task(batcher.submit([1]))
        await handler.entered.get()
        queued = asyncio.create_task(batcher.submit([2]))
        await until(lambda: batcher.queue_depth == 1)

        stopping = asyncio.create_task(batcher.stop(drain_timeout_s=1.0))
        await until(lambda: not batcher.accepting)
        with pytest.raises(BatcherClosedError):
            await batcher.submit([3])
        assert not stopping.done()

        handler.release.set()
        await stopping
        assert values(await running) == [10]
        assert values(await queued) == [20]
        assert handler.batches == [[1], [2]]

    run(main)


def test_stop_fails_leftovers_with_batcher_closed_error_when_drain_expires() -> None:
    async def main() -> None:
        handler = FakeHandler(blocked=True)  # never released
        batcher = make(handler)
        running = asyncio.create_task(batcher.submit([1]))
        await handler.entered.get()
        queued = asyncio.create_task(batcher.submit([2]))
        await until(lambda: batcher.queue_depth == 1)

        await batcher.stop(drain_timeout_s=0.01)
        for task in (running, queued):
            with pytest.raises(BatcherClosedError):
                await task
        assert batcher.queue_depth == 0
        assert batcher.in_flight == 0
        assert handler.batches == [[1]]

    run(main)


def test_submit_before_start_is_rejected() -> None:
    async def main() -> None:
        batcher: DynamicBatcher[int, int] = DynamicBatcher(
            FakeHandler(), max_batch_size=1, max_queue_size=1
        )
        assert not batcher.accepting
        with pytest.raises(BatcherClosedError):
            await batcher.submit([1])

    run(main)


def test_submit_rejects_empty_items_and_non_positive_timeout() -> None:
    async def main() -> None:
        batcher = make(FakeHandler())
        with pytest.raises(ValueError, match="at least one item"):
            await batcher.submit([])
        with pytest.raises(ValueError, match="timeout_s"):
            await batcher.submit([1], timeout_s=0)
        assert batcher.queue_depth == 0

    run(main)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_batch_size": 0, "max_queue_size": 8}, "max_batch_size"),
        ({"max_batch_size": 4, "max_queue_size": 0}, "max_queue_size"),
        ({"max_batch_size": 4, "max_queue_size": 8, "max_batch_delay_s": -0.1}, "delay"),
        ({"max_batch_size": 4, "max_queue_size": 8, "max_batch_delay_s": float("nan")}, "delay"),
        ({"max_batch_size": 4, "max_queue_size": 8, "max_batch_delay_s": float("inf")}, "delay"),
        ({"max_batch_size": 4, "max_queue_size": 8, "max_batches_in_flight": 0}, "in_flight"),
    ],
)
def test_constructor_rejects_invalid_limits(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DynamicBatcher(FakeHandler(), **kwargs)


def test_every_batcher_error_shares_one_base_class() -> None:
    for error in (
        QueueFullError,
        DeadlineExceededError,
        BatcherClosedError,
        BatchSizeMismatchError,
    ):
        assert issubclass(error, BatcherError)


def test_a_second_slot_starts_the_next_batch_while_the_first_still_runs() -> None:
    async def main() -> None:
        handler = FakeHandler(blocked=True)
        batcher = make(handler, max_batches_in_flight=2)
        first = asyncio.create_task(batcher.submit([1]))
        assert await handler.entered.get() == [1]
        second = asyncio.create_task(batcher.submit([2, 3]))
        assert await handler.entered.get() == [2, 3]
        third = asyncio.create_task(batcher.submit([4]))
        await until(lambda: batcher.queue_depth == 1)
        assert batcher.in_flight == 3
        assert not (first.done() or second.done() or third.done())

        handler.release.set()
        assert values(await first) == [10]
        assert values(await second) == [20, 30]
        assert values(await third) == [40]
        assert handler.batches == [[1], [2, 3], [4]]

    run(main)


async def two_batches_running(
    handler: FakeHandler,
) -> tuple[DynamicBatcher[int, int], asyncio.Task[Any], asyncio.Task[Any]]:
    """A batcher with two slots, each running a one-item batch that `handler` holds."""
    batcher = make(handler, max_batches_in_flight=2)
    first = asyncio.create_task(batcher.submit([1]))
    second = asyncio.create_task(batcher.submit([2]))
    await until(lambda: batcher.in_flight == 2)
    return batcher, first, second


def test_stop_waits_for_every_batch_in_flight() -> None:
    async def main() -> None:
        handler = FakeHandler(blocked=True)
        batcher, first, second = await two_batches_running(handler)
        stopping = asyncio.create_task(batcher.stop(drain_timeout_s=1))
        await asyncio.sleep(0)  # one turn of the loop: the stop has begun and waits on the batches
        assert not stopping.done()
        handler.release.set()
        await stopping
        assert values(await first) == [10]
        assert values(await second) == [20]

    run(main)


def test_drain_timeout_fails_every_batch_in_flight_with_closed() -> None:
    async def main() -> None:
        batcher, first, second = await two_batches_running(FakeHandler(blocked=True))
        await batcher.stop(drain_timeout_s=0)
        for task in (first, second):
            with pytest.raises(BatcherClosedError):
                await task
        assert batcher.in_flight == 0

    run(main)


def test_stop_cancels_a_hung_batch_whose_callers_have_all_gone() -> None:
    async def main() -> None:
        handler = FakeHandler(blocked=True)  # never released: a hung forward pass
        batcher = make(handler)
        with pytest.raises(DeadlineExceededError):
            await batcher.submit([1], timeout_s=0.01)
        assert batcher.longest_batch_s > 0
        await batcher.stop(drain_timeout_s=60)  # returns at once, within the guard's 2 s
        assert batcher.in_flight == 0 and batcher.longest_batch_s == 0

    run(main)
