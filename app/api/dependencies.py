"""Typed access to the inference service on ``app.state``, and the HTTP layer's admission door."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.admission import body_reservation
from app.api.errors import ApiError, retry_after_headers
from app.http_protocol import Door, request_path
from app.inference import InferenceService


def inference_route(path: bytes) -> str | None:
    """The route template of an inference path (/predict, /explain, v2 infer), else None.

    The template, never the raw path, labels the metrics: a client choosing model names in
    /v2/models/{name}/infer must not be able to mint new time series.
    """
    if path in (b"/predict", b"/explain"):
        return path.decode()
    if not (path.startswith(b"/v2/models/") and path.endswith(b"/infer")):
        return None
    versioned = b"/versions/" in path
    return "/v2/models/{name}/versions/{version}/infer" if versioned else "/v2/models/{name}/infer"


def admission_door(service: InferenceService) -> Door:
    """The HTTP layer's check as a request's headers complete, before the app sees it.

    An inference request that admission would refuse is answered 503 from there, at a fraction of
    the cost of the route's own refusal: under a flood of clients that do not back off, refusals are
    most of the work. Counted in the metrics; not access-logged one by one (a flood would turn the
    log into a second attack).
    """

    max_body_bytes = service.settings.max_body_bytes

    def door(method: bytes, target: bytes, headers: list[tuple[bytes, bytes]]) -> ApiError | None:
        if method != b"POST" or service.pipeline is None:
            return None
        route = inference_route(request_path(target))
        if route is None:
            return None
        declared = next((value for name, value in headers if name == b"content-length"), None)
        refused = service.pipeline.gate.refusal(body_reservation(declared, max_body_bytes))
        if refused is None:
            return None
        service.metrics.count_rejection("overloaded")
        service.metrics.requests.labels(route, "503").inc()
        return ApiError(503, "overloaded", str(refused), retry_after_headers(refused.retry_after_s))

    return door


async def get_service(request: Request) -> InferenceService:
    return request.app.state.service


ServiceDep = Annotated[InferenceService, Depends(get_service)]
