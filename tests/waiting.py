"""The tests' one way to wait: poll a condition until it holds, with a deadline, never a fixed sleep.

A fixed sleep is either too short on a loaded machine (the test fails for no reason) or too long
everywhere (the suite is slow); a loop without a deadline hangs the run when the awaited state
never comes. These poll often and fail naming what did not happen.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

T = TypeVar("T")
INTERVAL_S = 0.01


def _give_up(what: str, timeout_s: float, detail: Callable[[], str] | None) -> None:
    pytest.fail(f"{what}: not within {timeout_s} s" + (f"\n{detail()}" if detail else ""))


def wait_for(
    condition: Callable[[], T],
    timeout_s: float,
    what: str,
    detail: Callable[[], str] | None = None,
) -> T:
    """``condition()``'s first truthy value, polled until ``timeout_s``; fails the test after,
    with ``detail()`` (a server log, say) when given. ``condition`` may itself fail the test
    (``pytest.fail``) when what it waits for can no longer come."""
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        if time.monotonic() > deadline:
            _give_up(what, timeout_s, detail)
        time.sleep(INTERVAL_S)
    return value


async def wait_for_async(
    condition: Callable[[], Awaitable[T]],
    timeout_s: float,
    what: str,
    detail: Callable[[], str] | None = None,
    interval_s: float = INTERVAL_S,
) -> T:
    """``wait_for`` for a coroutine condition, without blocking the event loop between polls.

    ``interval_s=0`` polls once per turn of the loop: for state that other tasks on the same loop
    change, where a 10 ms pause would eat into a window the test measures."""
    deadline = time.monotonic() + timeout_s
    while not (value := await condition()):
        if time.monotonic() > deadline:
            _give_up(what, timeout_s, detail)
        await asyncio.sleep(interval_s)
    return value
