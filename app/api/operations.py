"""Endpoints for orchestrators: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.api.dependencies import ServiceDep
from app.api.schemas import HealthResponse
from app.inference import InferenceService
from app.state import Phase

router = APIRouter()
# A batch is never called stuck sooner: a short request deadline is no reason to restart a
# process whose slowest batch (a large model, a full batch, a busy CPU) takes a few seconds.
MIN_STUCK_S = 10.0


def _stuck(service: InferenceService) -> str | None:
    """Why the inference thread counts as hung, if it does: a batch has outlived every deadline."""
    pipeline = service.pipeline
    running_s = pipeline.batcher.longest_batch_s if pipeline else 0.0
    if running_s > max(service.settings.request_timeout_s, MIN_STUCK_S):
        return f"a batch has been running for {running_s:.0f}s, beyond the request deadline"
    return None


def _health(service: InferenceService) -> HealthResponse:
    state, pipeline = service.state, service.pipeline
    manifest = pipeline.runner.bundle.manifest if pipeline else None
    return HealthResponse(
        status=state.phase.value,
        reason=state.reason,
        model=manifest.name if manifest else None,
        arch=manifest.arch if manifest else None,
        device=str(pipeline.runner.device) if pipeline else None,
        precision=pipeline.runner.precision if pipeline else None,
        max_batch_size=service.settings.max_batch_size,
        queue_depth=pipeline.batcher.queue_depth if pipeline else 0,
        saturation=round(pipeline.gate.saturation, 3) if pipeline else 0.0,
        uptime_s=round(state.uptime_s, 3),
    )


@router.get("/health/live")
async def live(service: ServiceDep) -> JSONResponse:
    """200 while the process and its event loop run; 503 if start-up work failed for good or the
    inference thread is stuck: both are fixed only by a restart."""
    if service.state.phase is Phase.FAILED:
        return JSONResponse({"status": "failed", "reason": service.state.reason}, status_code=503)
    stuck = _stuck(service)
    if stuck:
        return JSONResponse({"status": "stuck", "reason": stuck}, status_code=503)
    return JSONResponse({"status": "alive"})


@router.get("/health/ready", response_model=HealthResponse)
@router.get("/health", response_model=HealthResponse)
async def ready(service: ServiceDep) -> JSONResponse:
    """200 only when the model is loaded and warmed, the server is not draining and inference is
    not stuck. Overload does not make it 503: every replica is loaded alike, and taking them out
    of rotation together would turn a burst into an outage; refusals at the door (503 with
    ``Retry-After``) and ``saturation`` here are the overload signals."""
    body = _health(service).model_dump()
    stuck = _stuck(service)
    ready = service.state.ready and not stuck
    if stuck:
        body.update(status="stuck", reason=stuck)
    status = 200 if ready else 503
    headers = None if ready else {"Retry-After": "1"}
    return JSONResponse(body, status_code=status, headers=headers)


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(service: ServiceDep) -> Response:
    """Prometheus text exposition of this process's metrics."""
    return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)
