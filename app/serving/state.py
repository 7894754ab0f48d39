"""Lifecycle of one server: starting -> ready -> draining, and what /health reports about it."""

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
    """Mutable lifecycle flags, read by the health routes and the predict route."""

    phase: Phase = Phase.STARTING
    reason: str = "loading model"
    started_at: float = field(default_factory=time.monotonic)
    requests_in_flight: int = 0

    def mark_warming_up(self) -> None:
        if self.phase is Phase.STARTING:
            self.reason = "warming up"

    def mark_ready(self) -> None:
        if self.phase is Phase.STARTING:  # never back from draining or failed
            self.phase, self.reason = Phase.READY, ""

    def mark_draining(self) -> None:
        if self.phase is not Phase.FAILED:
            self.phase, self.reason = Phase.DRAINING, "shutting down"

    def mark_failed(self, reason: str) -> None:
        self.phase, self.reason = Phase.FAILED, reason

    @property
    def ready(self) -> bool:
        return self.phase is Phase.READY

    @property
    def idle(self) -> bool:
        """No request is being handled: a drain can end early."""
        return self.requests_in_flight == 0

    @property
    def uptime_s(self) -> float:
        return time.monotonic() - self.started_at
