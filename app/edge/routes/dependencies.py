"""Typed access to the inference service on ``app.state``, and the HTTP layer's admission door."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from app.edge.http_errors import ApiError, as_api_error
from app.edge.http_protocol import Door, request_path
from app.serving.admission import body_reservation
from app.serving.service import InferenceService

RouteMatcher = Callable[[str], str | None]


def route_matcher(routes: Sequence[BaseRoute]) -> RouteMatcher:
    """``path -> the template of the route among ``routes`` it would reach``, else None: the
    inference routes as the app registers them (``INFERENCE_ROUTERS``), never repeated as strings.

    The template, never the raw path, labels the metrics: a client choosing model names in
    /v2/models/{name}/infer must not be able to mint new time series.
    """
    compiled = [(route.path_regex, route.path) for route in routes if isinstance(route, APIRoute)]

    def match(path: str) -> str | None:
        return next((template for regex, template in compiled if regex.match(path)), None)

    return match


def admission_door(service: InferenceService, inference_route: RouteMatcher) -> Door:
    """The HTTP layer's check as a request's headers complete, before the app sees it.

    An inference request that admission would refuse is answered 503 from there, at a fraction of
    the cost of the route's own refusal: under a flood of clients that do not back off, refusals are
    most of the work. Counted in the metrics; not access-logged one by one (a flood would turn the
    log into a second attack).
    """

    max_body_bytes = service.settings.max_body_bytes

    def door(method: bytes, target: bytes, headers: list[tuple[bytes, bytes]]) -> ApiError | None:
        if method != b"POST":
            return None
        route = inference_route(request_path(target).decode("latin-1"))
        if route is None:
            return None
        declared = next((value for name, value in headers if name == b"content-length"), None)
        refused = service.gate.refusal(body_reservation(declared, max_body_bytes))
        if refused is None:
            return None
        service.metrics.count_rejection("overloaded")
        service.metrics.requests.labels(route, "503").inc()
        return as_api_error(refused)

    return door


async def get_service(request: Request) -> InferenceService:
    return request.app.state.service


ServiceDep = Annotated[InferenceService, Depends(get_service)]
# The model a /predict or /explain request is for; a server of one model needs none named.
ModelQuery = Annotated[
    str | None,
    Query(description="The model to run (GET /model lists them); needed when several serve."),
]
