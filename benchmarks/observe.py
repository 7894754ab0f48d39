"""What the harness reads from a running server at the edges of a measured window.

Two numbers, both as counters whose difference over the window is reported: the CPU time of the
server's whole process group (every system, LitServe's worker processes included) and, for
resnet-serve, the sum and count of its batch-size histogram from ``GET /metrics``.
"""

from __future__ import annotations

import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

BATCH_HISTOGRAM = (
    "resnet_serve_batch_size"  # app/serving/metrics.py: the batch size each image ran in
)
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class ServerSample:
    """Counters read at one moment; subtract two to get the window's share."""

    cpu_s: float | None
    batch_sum: float | None = None
    batch_count: float | None = None

    def mean_batch_since(self, earlier: ServerSample) -> float | None:
        """Mean batch size an image ran in between ``earlier`` and this sample."""
        if self.batch_count is None or earlier.batch_count is None:
            return None
        images = self.batch_count - earlier.batch_count
        return (self.batch_sum - earlier.batch_sum) / images if images else None

    def cpu_since(self, earlier: ServerSample) -> float | None:
        if self.cpu_s is None or earlier.cpu_s is None:
            return None
        return self.cpu_s - earlier.cpu_s


def group_stats(group: int) -> dict[int, list[str]]:
    """pid -> the fields of ``/proc/<pid>/stat`` after the command name, for each live process in
    process group ``group`` (Linux only; empty elsewhere). Index ``n - 3`` is field ``n`` of
    stat(5): state, ppid, pgrp, ..., utime (14), stime (15), ..., rss (24, in pages)."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process ended while we looked
        if int(fields[2]) == group:
            found[int(stat.parent.name)] = fields
    return found


def group_cpu_seconds(group: int) -> float | None:
    """User + system CPU seconds of the live processes in process group ``group`` (Linux only)."""
    stats = group_stats(group).values()
    return sum(int(f[11]) + int(f[12]) for f in stats) / CLOCK_TICKS if stats else None


def group_rss_bytes(group: int) -> int | None:
    """Resident memory of the live processes in process group ``group`` (Linux only)."""
    stats = group_stats(group).values()
    return sum(int(f[21]) for f in stats) * PAGE_BYTES if stats else None


def batch_histogram(base_url: str) -> tuple[float, float]:
    """The ``_sum`` and ``_count`` of resnet-serve's batch-size histogram, over every model and
    version it has a series for (none before the first batch: zeros)."""
    with urllib.request.urlopen(base_url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    totals = {BATCH_HISTOGRAM + "_sum": 0.0, BATCH_HISTOGRAM + "_count": 0.0}
    for family in text_string_to_metric_families(text):
        if family.name == BATCH_HISTOGRAM:
            for sample in family.samples:
                if sample.name in totals:
                    totals[sample.name] += sample.value
    return totals[BATCH_HISTOGRAM + "_sum"], totals[BATCH_HISTOGRAM + "_count"]


def sample(base_url: str, group: int, scrape_batches: bool) -> ServerSample:
    """Read the server's counters now."""
    cpu = group_cpu_seconds(group)
    if not scrape_batches:
        return ServerSample(cpu)
    total, count = batch_histogram(base_url)
    return ServerSample(cpu, total, count)
