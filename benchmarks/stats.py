"""What a measured window produced, merged across load processes and reduced to the reported numbers."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

OK = "200"
PERCENTILES = {"p50": 50, "p90": 90, "p99": 99}


@dataclass
class LoadResult:
    """Requests that completed inside one measured window, from one or more load processes.

    ``latencies_s`` holds successful requests only (a fast 503 must not flatter the percentiles);
    every request, failed or not, is counted in ``statuses`` by HTTP status or transport error.
    ``sent_latencies_s`` holds every request *sent* in the window, answered inside it or after, a
    failed one counted as the client's timeout (the longest a caller would have waited): its p99
    is the one a latency target is judged by, since errors can only raise it.
    """

    window_s: float
    latencies_s: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    client_cpu_s: float = 0.0
    sent_latencies_s: list[float] = field(default_factory=list)

    @classmethod
    def merge(cls, parts: Iterable[LoadResult]) -> LoadResult:
        """One result from the results of processes that measured the same window."""
        merged = cls(window_s=0.0)
        for part in parts:
            merged.window_s = max(merged.window_s, part.window_s)
            merged.latencies_s.extend(part.latencies_s)
            merged.statuses.update(part.statuses)
            merged.sent_latencies_s.extend(part.sent_latencies_s)
            merged.client_cpu_s += part.client_cpu_s
        return merged

    def summary(
        self, images_per_request: int = 1
    ) -> dict[str, float | int | dict[str, int] | None]:
        """images/s (``images_per_request`` in every request), latency percentiles in ms (per
        request) and errors by status; ``p99_sent_ms`` over every request sent in the window,
        failures included."""
        ok = self.statuses[OK]
        latencies_ms = np.asarray(self.latencies_s) * 1000.0
        summary: dict[str, float | int | dict[str, int] | None] = {
            "images_per_s": ok * images_per_request / self.window_s if self.window_s else 0.0,
            "window_s": self.window_s,
            "requests": sum(self.statuses.values()),
            "ok": ok,
            "images_per_request": images_per_request,
            "errors": {status: n for status, n in sorted(self.statuses.items()) if status != OK},
            "client_cpu_s": self.client_cpu_s,
        }
        for name, q in PERCENTILES.items():
            summary[f"{name}_ms"] = float(np.percentile(latencies_ms, q)) if ok else None
        summary["max_ms"] = float(latencies_ms.max()) if ok else None
        sent_ms = np.asarray(self.sent_latencies_s) * 1000.0
        summary["p99_sent_ms"] = float(np.percentile(sent_ms, 99)) if len(sent_ms) else None
        return summary
