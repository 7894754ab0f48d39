"""Endpoints for orchestrators: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.edge.http_errors import retry_after_headers
from app.edge.routes.dependencies import ServiceDep
from app.wire.rest import HealthResponse, LivenessResponse

router = APIRouter()
NOT_LIVE: dict[int | str, dict[str, Any]] = {
    503: {
        "model": LivenessResponse,
        "description": "Start-up failed for good, or a batch is stuck: restart.",
    }
}
NOT_READY: dict[int | str, dict[str, Any]] = {
    503: {
        "model": HealthResponse,
        "description": "Starting, draining, failed or stuck: send no traffic here now.",
    }
}


@router.get("/health/live", response_model=LivenessResponse, responses=NOT_LIVE)
async def live(service: ServiceDep) -> JSONResponse:
    """200 while the process and its event loop run; 503 if start-up work failed for good or the
    inference thread is stuck: both are fixed only by a restart."""
    health = service.health()
    if not health.live:
        body = LivenessResponse(status=health.status, reason=health.reason)
        return JSONResponse(body.model_dump(exclude_none=True), status_code=503)
    return JSONResponse(LivenessResponse(status="alive").model_dump(exclude_none=True))


@router.get("/health/ready", response_model=HealthResponse, responses=NOT_READY)
@router.get("/health", response_model=HealthResponse, responses=NOT_READY)
async def ready(service: ServiceDep) -> JSONResponse:
    """200 only when the model is loaded and warmed, the server is not draining and inference is
    not stuck. Overload does not make it 503: every replica is loaded alike, and taking them out
    of rotation together would turn a burst into an outage; refusals at the door (503 with
    ``Retry-After``) and ``saturation`` here are the overload signals."""
    health = service.health()
    body = health.model_dump()
    if health.ready:
        return JSONResponse(body)
    return JSONResponse(body, status_code=503, headers=retry_after_headers(1.0))


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(service: ServiceDep) -> Response:
    """Prometheus text exposition of this process's metrics."""
    return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)
