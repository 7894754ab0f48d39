"""What the health routes of every protocol answer from (``app.wire.rest.HealthResponse``): the
server's phase, or ``stuck``.

``stuck`` is the one state the phase cannot show: a forward pass that has outlived every request
deadline. Only a restart cures it, so liveness fails on it as on a failed start-up.
"""

from __future__ import annotations

from app.serving.pipeline import InferencePipeline
from app.serving.state import Phase, ServiceState
from app.settings import Settings
from app.wire.rest import HealthResponse

# A batch is never called stuck sooner: a short request deadline is no reason to restart a
# process whose slowest batch (a large model, a full batch, a busy CPU) takes a few seconds.
MIN_STUCK_S = 10.0


def health_report(
    settings: Settings, state: ServiceState, pipeline: InferencePipeline
) -> HealthResponse:
    """The report now, as /health/ready answers it (``live`` and ``ready`` read it for the other
    health routes)."""
    status, reason = state.phase.value, state.reason
    running_s = pipeline.batcher.longest_batch_s
    if state.phase is not Phase.FAILED and running_s > max(settings.request_timeout_s, MIN_STUCK_S):
        status = "stuck"
        reason = f"a batch has been running for {running_s:.0f}s, beyond the request deadline"
    runner = pipeline.runner
    return HealthResponse(
        status=status,
        reason=reason,
        model=runner.bundle.manifest.name,
        arch=runner.bundle.manifest.arch,
        device=str(runner.device),
        precision=runner.precision,
        max_batch_size=runner.max_batch_size,
        queue_depth=pipeline.batcher.queue_depth,
        saturation=round(pipeline.gate.saturation, 3),
        uptime_s=round(state.uptime_s, 3),
    )
