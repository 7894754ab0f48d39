"""Endpoints for orchestrators: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.api.dependencies import Service, ServiceDep
from app.api.schemas import HealthResponse
from app.state import Phase

router = APIRouter()


def _health(service: Service) -> HealthResponse:
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
        uptime_s=round(state.uptime_s, 3),
    )


@router.get("/health/live")
async def live(service: ServiceDep) -> JSONResponse:
    """200 while the process and its event loop run; 503 only if start-up work failed for good."""
    if service.state.phase is Phase.FAILED:
        return JSONResponse({"status": "failed", "reason": service.state.reason}, status_code=503)
    return JSONResponse({"status": "alive"})


@router.get("/health/ready", response_model=HealthResponse)
@router.get("/health", response_model=HealthResponse)
async def ready(service: ServiceDep) -> JSONResponse:
    """200 only when the model is loaded and warmed and the server is not draining."""
    body = _health(service).model_dump()
    status = 200 if service.state.ready else 503
    headers = None if service.state.ready else {"Retry-After": "1"}
    return JSONResponse(body, status_code=status, headers=headers)


@router.get("/metrics")
async def metrics(service: ServiceDep) -> Response:
    return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)
