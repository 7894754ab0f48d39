"""What the health routes of every protocol answer from (``app.wire.rest.HealthResponse``): the
server's phase, or ``stuck``.

``stuck`` is the one state the phase cannot show: a forward pass that has outlived every request
deadline. Only a restart cures it, so liveness fails on it as on a failed start-up.
"""

from __future__ import annotations

from app.serving.admission import AdmissionGate
from app.serving.served_model import ServedModel, first_serving
from app.serving.state import Phase, ServiceState
from app.settings import Settings
from app.wire.rest import HealthResponse

# A batch is never called stuck sooner: a short request deadline is no reason to restart a
# process whose slowest batch (a large model, a full batch, a busy CPU) takes a few seconds.
MIN_STUCK_S = 10.0


def health_report(
    settings: Settings, state: ServiceState, gate: AdmissionGate, models: dict[str, ServedModel]
) -> HealthResponse:
    """The report now, as /health/ready answers it (``live`` and ``ready`` read it for the other
    health routes). A server whose every model is unloaded (the repository API) is not ready."""
    status, reason = state.phase.value, state.reason
    pipelines = [pipeline for model in models.values() for pipeline in model.pipelines]
    running_s = max((pipeline.batcher.longest_batch_s for pipeline in pipelines), default=0.0)
    if state.phase is not Phase.FAILED and running_s > max(settings.request_timeout_s, MIN_STUCK_S):
        status = "stuck"
        reason = f"a batch has been running for {running_s:.0f}s, beyond the request deadline"
    elif state.phase is Phase.READY and not pipelines:
        status, reason = "unloaded", "; ".join(model.unloaded for model in models.values())
    first = first_serving(models) if pipelines else None
    runner = first.latest.pipeline.runner if first is not None else None
    return HealthResponse(
        status=status,
        reason=reason,
        model=first.name if first is not None else None,
        models=[name for name, model in models.items() if model.versions],
        arch=runner.bundle.manifest.arch if runner is not None else None,
        device=str(runner.device) if runner is not None else None,
        precision=runner.precision if runner is not None else None,
        max_batch_size=runner.max_batch_size if runner is not None else 0,
        queue_depth=sum(pipeline.batcher.queue_depth for pipeline in pipelines),
        saturation=round(gate.saturation, 3),
        uptime_s=round(state.uptime_s, 3),
    )
