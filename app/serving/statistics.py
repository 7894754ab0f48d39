"""Per-model inference statistics in Triton's terms: counts and cumulative nanoseconds.

Triton's statistics extension (``/v2/models/{name}/stats``, gRPC ``ModelStatistics``) is what
perf_analyzer and Triton's model analyzer read to split a request's time into queueing and
compute. The numbers come from what the service measures anyway: a request's time from admission
to answer, its decode (``compute_input``), its wait in the batcher's queue, the forward pass of its
batch (``compute_infer``) and the building of its answer (``compute_output``). Batch statistics
count each forward pass once, by its size; its whole time is ``compute_infer`` (the runner does not
time the copy in and out apart from the pass).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class Duration:
    """How many times something happened and how long it took in all."""

    count: int = 0
    ns: int = 0

    def add(self, seconds: float) -> None:
        self.count += 1
        self.ns += max(0, round(seconds * 1e9))


@dataclass(frozen=True)
class RequestTimes:
    """The stages of a request that classified, in seconds."""

    input_s: float
    queue_s: float
    infer_s: float
    output_s: float


@dataclass
class RunningStatistics:
    """The cumulative statistics of one served model version since it was loaded; updated on the
    event loop."""

    success: Duration = field(default_factory=Duration)
    fail: Duration = field(default_factory=Duration)
    queue: Duration = field(default_factory=Duration)
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)
    inference_count: int = 0  # images classified
    execution_count: int = 0  # forward passes
    last_inference_ms: int = 0  # wall-clock milliseconds since the epoch; 0: none yet
    batches: dict[int, Duration] = field(default_factory=dict)  # by batch size

    def record_batch(self, size: int, seconds: float) -> None:
        """One forward pass of ``size`` images that took ``seconds``."""
        self.execution_count += 1
        self.inference_count += size
        self.last_inference_ms = int(time.time() * 1000)
        self.batches.setdefault(size, Duration()).add(seconds)

    def record_success(self, total_s: float, times: RequestTimes) -> None:
        self.success.add(total_s)
        self.compute_input.add(times.input_s)
        self.queue.add(times.queue_s)
        self.compute_infer.add(times.infer_s)
        self.compute_output.add(times.output_s)

    def record_failure(self, total_s: float) -> None:
        self.fail.add(total_s)
