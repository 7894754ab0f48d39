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


def wait_for(condition: Callable[[], T], timeout_s: float, what: str) -> T:
    """``condition()``'s first truthy value, polled until ``timeout_s``; fails the test after."""
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout_s} s")
        time.sleep(INTERVAL_S)
    return value


async def wait_for_async(condition: Callable[[], Awaitable[T]], timeout_s: float, what: str) -> T:
    """``wait_for`` for a coroutine condition, without blocking the event loop between polls."""
    deadline = time.monotonic() + timeout_s
    while not (value := await condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout_s} s")
        await asyncio.sleep(INTERVAL_S)
    return value
