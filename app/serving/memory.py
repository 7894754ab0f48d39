"""Keep the process's resident memory near its working set after floods of large uploads.

Decoding a 20-40 MP image allocates and frees hundreds of megabytes. glibc keeps what is freed in
its per-thread arenas, and raises its mmap threshold after the first large free so that later large
blocks come from those arenas too; resident memory then stays at the flood's peak long after it
has passed. ``malloc_trim(0)`` hands the free pages of every arena back to the OS.
"""

from __future__ import annotations

import ctypes
import functools
import os
import threading
from collections.abc import Callable

DEFAULT_TRIM_PIXELS = 200_000_000
DEFAULT_TRIM_INTERVAL_S = 5.0


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library has none (musl, macOS, Windows)."""
    try:
        function = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError, TypeError):
        return None
    function.argtypes = [ctypes.c_size_t]
    function.restype = ctypes.c_int
    return function


def trim_heap() -> bool:
    """Return freed heap memory to the OS; True if any was released (always False without glibc)."""
    trim = _malloc_trim()
    return trim is not None and trim(0) == 1


def rss_bytes() -> int | None:
    """The process's resident set size now, from ``/proc/self/statm``; None without /proc."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            resident_pages = int(statm.read().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


class MemoryTrimmer:
    """Trims the heap from a thread of its own, after large decodes, at most once per interval.

    Decode threads call ``note`` with the pixels of each image they decoded: a lock and an addition,
    nothing on the decode path waits for a trim. Every ``interval_s`` the trimmer's thread trims if
    ``threshold_pixels`` have been decoded since the last trim (a flood in progress), or if some
    were and none since the previous tick (a flood has ended: with a trim on the decode threads
    alone, whatever the last images of a flood left would stay until the next flood).

    A trim that releases a few hundred megabytes takes 7-60 ms (measured on 2 busy cores), holding
    each glibc arena's lock in turn, so it is kept off the decode threads and rare. Small images
    rarely reach the threshold, and a trim with nothing to release costs about 0.1 ms.
    """

    def __init__(
        self,
        threshold_pixels: int = DEFAULT_TRIM_PIXELS,
        interval_s: float = DEFAULT_TRIM_INTERVAL_S,
        trim: Callable[[], bool] = trim_heap,
    ) -> None:
        if threshold_pixels <= 0 or interval_s <= 0:
            raise ValueError("threshold_pixels and interval_s must be positive")
        self.threshold_pixels = threshold_pixels
        self.interval_s = interval_s
        self.trims = 0
        self._trim = trim
        self._lock = threading.Lock()
        self._pixels_since_trim = 0
        self._noted_since_tick = False
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-trim", daemon=True)

    def note(self, pixels: int) -> None:
        """Count ``pixels`` decoded (after any JPEG draft scaling: what was allocated)."""
        with self._lock:
            self._pixels_since_trim += pixels
            self._noted_since_tick = True

    def tick(self) -> bool:
        """Trim if due; the thread calls it every ``interval_s``. True if it trimmed."""
        with self._lock:
            pixels, busy = self._pixels_since_trim, self._noted_since_tick
            self._noted_since_tick = False
            if pixels == 0 or (busy and pixels < self.threshold_pixels):
                return False
            self._pixels_since_trim = 0
            self.trims += 1
        self._trim()
        return True

    def start(self) -> None:
        """Start the trimming thread (from the lifespan; ``close`` it on the way out)."""
        self._thread.start()

    def close(self) -> None:
        """Stop the thread (within one trim at most)."""
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while not self._stopped.wait(self.interval_s):
            self.tick()
