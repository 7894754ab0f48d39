"""Lifecycle of one server: starting -> ready -> draining, what /health reports about it, and the
one drain timer.

The drain is owned here, once: the first signal (``app.edge.server``) or the lifespan's shut-down
starts it, and both the server's wait for idle and the batcher's final stop read the same deadline.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field


class Phase(enum.StrEnum):
    STARTING = "starting"
    READY = "ready"
    DRAINING = "draining"
    FAILED = "failed"


@dataclass
class ServiceState:
    """Mutable lifecycle flags, read by the health routes and the inference routes."""

    drain_timeout_s: float
    phase: Phase = Phase.STARTING
    reason: str = "warming up"
    started_at: float = field(default_factory=time.monotonic)
    requests_in_flight: int = 0
    drain_deadline: float | None = None

    def mark_ready(self) -> None:
        if self.phase is Phase.STARTING:  # never back from draining or failed
            self.phase, self.reason = Phase.READY, ""

    def mark_draining(self) -> None:
        """Refuse new work from now on; admitted work has ``drain_timeout_s`` from the first call."""
        if self.drain_deadline is None:
            self.drain_deadline = time.monotonic() + self.drain_timeout_s
        if self.phase is not Phase.FAILED:
            self.phase, self.reason = Phase.DRAINING, "shutting down"

    def cut_drain_short(self) -> None:
        """End the drain now (a second signal): what is still queued is answered 503."""
        self.mark_draining()
        self.drain_deadline = time.monotonic()

    def mark_failed(self, reason: str) -> None:
        self.phase, self.reason = Phase.FAILED, reason

    @property
    def ready(self) -> bool:
        return self.phase is Phase.READY

    @property
    def draining(self) -> bool:
        return self.drain_deadline is not None

    @property
    def drain_left_s(self) -> float:
        """What remains of the drain: the whole timeout before it starts, never below 0."""
        if self.drain_deadline is None:
            return self.drain_timeout_s
        return max(0.0, self.drain_deadline - time.monotonic())

    @property
    def idle(self) -> bool:
        """No request is being handled: a drain can end early."""
        return self.requests_in_flight == 0

    @property
    def uptime_s(self) -> float:
        return time.monotonic() - self.started_at
