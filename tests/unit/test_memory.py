"""Freed heap goes back to the OS after large decodes, on the trimmer's schedule."""

from __future__ import annotations

import mmap
import threading

import pytest

from app.serving import memory
from app.serving.memory import MemoryTrimmer, rss_bytes, trim_heap

MB = 2**20
needs_proc = pytest.mark.skipif(rss_bytes() is None, reason="no /proc/self/statm")


@needs_proc
def test_rss_bytes_grows_with_touched_memory() -> None:
    # Fresh anonymous pages: a heap allocation could reuse pages the process already holds.
    with mmap.mmap(-1, 64 * MB) as block:
        before = rss_bytes()
        block.write(b"\x01" * (64 * MB))  # written, so resident
        assert rss_bytes() - before >= 48 * MB


@needs_proc
@pytest.mark.skipif(memory._malloc_trim() is None, reason="the C library has no malloc_trim")
def test_trim_heap_returns_memory_freed_between_live_blocks() -> None:
    # 64 KB blocks come from the heap (below glibc's mmap threshold); keeping every 32nd alive
    # leaves holes that free() cannot give back by itself.
    blocks = [b"\x01" * (64 * 1024) for _ in range(2048)]
    kept = blocks[::32]
    del blocks
    before = rss_bytes()
    assert trim_heap()
    assert before - rss_bytes() >= 64 * MB
    del kept


def test_trim_heap_is_a_no_op_without_malloc_trim(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "_malloc_trim", lambda: None)
    assert trim_heap() is False


class CountingTrim:
    def __init__(self) -> None:
        self.calls = 0
        self.called = threading.Event()

    def __call__(self) -> bool:
        self.calls += 1
        self.called.set()
        return True


def test_nothing_decoded_means_no_trim() -> None:
    trim = CountingTrim()
    trimmer = MemoryTrimmer(threshold_pixels=100, interval_s=1, trim=trim)
    assert not trimmer.tick()
    assert trim.calls == 0


def test_a_flood_in_progress_is_trimmed_once_the_threshold_is_passed() -> None:
    trim = CountingTrim()
    trimmer = MemoryTrimmer(threshold_pixels=100, interval_s=1, trim=trim)
    trimmer.note(60)
    assert not trimmer.tick()  # still decoding, under the threshold
    trimmer.note(60)
    assert trimmer.tick()
    trimmer.note(99)
    assert not trimmer.tick()  # the trim reset the count
    assert trim.calls == trimmer.trims == 1


def test_the_end_of_a_flood_is_trimmed_at_the_first_quiet_tick() -> None:
    trim = CountingTrim()
    trimmer = MemoryTrimmer(threshold_pixels=100, interval_s=1, trim=trim)
    trimmer.note(10)
    assert not trimmer.tick()  # decoding since the last tick
    assert trimmer.tick()  # quiet since: what the last images left is returned
    assert not trimmer.tick()  # and nothing is pending after
    assert trim.calls == 1


def test_the_thread_trims_within_an_interval_and_stops_on_close() -> None:
    trim = CountingTrim()
    trimmer = MemoryTrimmer(threshold_pixels=100, interval_s=0.01, trim=trim)
    trimmer.start()
    trimmer.note(100)
    assert trim.called.wait(5)
    trimmer.close()
    assert not trimmer._thread.is_alive()
    assert trim.calls == 1


@pytest.mark.parametrize(("pixels", "interval_s"), [(0, 1.0), (100, 0.0)])
def test_nonsense_settings_are_refused(pixels: int, interval_s: float) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        MemoryTrimmer(pixels, interval_s)
