"""The one place where requests are identified, counted, timed and logged.

A plain ASGI middleware (not ``BaseHTTPMiddleware``) so it adds no task per request and does not
interfere with disconnect detection in the predict route.
"""

from __future__ import annotations

import time
import uuid

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.edge.logs import log_access
from app.edge.routes.dependencies import RouteMatcher
from app.serving.metrics import ServiceMetrics
from app.serving.state import ServiceState

REQUEST_ID_HEADER = "x-request-id"
MAX_REQUEST_ID_LENGTH = 128


def _incoming_request_id(scope: Scope) -> str | None:
    """The client's id if short and printable: it is echoed in a header and written to every log."""
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER.encode():
            text = value.decode("latin-1").strip()
            if 0 < len(text) <= MAX_REQUEST_ID_LENGTH and text.isprintable():
                return text
    return None


class RequestObserver:
    """Assign or honour ``X-Request-ID``, echo it, and record one log line and metrics per request."""

    def __init__(
        self,
        app: ASGIApp,
        metrics: ServiceMetrics,
        state: ServiceState,
        inference_route: RouteMatcher,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.state = state
        self.inference_route = inference_route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_request_id(scope) or uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        started = time.perf_counter()
        status = 500
        first_byte: float | None = None

        async def send_with_id(message: Message) -> None:
            nonlocal status, first_byte
            if message["type"] == "http.response.start":
                status = message["status"]
                first_byte = time.perf_counter()
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        # Only requests that run the model count: leaving probes, scrapes and pages out keeps the
        # in-flight gauge an exact scaling signal and lets a drain end while health checks arrive.
        is_work = self.inference_route(scope["path"]) is not None
        self.state.requests_in_flight += is_work
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self.state.requests_in_flight -= is_work
            elapsed = (first_byte or time.perf_counter()) - started
            route = scope.get("route")
            route_name = getattr(route, "path", "unmatched")
            self.metrics.requests.labels(route_name, str(status)).inc()
            self.metrics.latency.labels(route_name).observe(elapsed)
            # The path is percent-decoded (CR, LF, ESC and all): the formatters in app.edge.logs
            # escape it.
            log_access(
                scope["method"],
                scope["path"],
                route_name,
                status,
                elapsed,
                request_id,
                batch_size=state.get("batch_size"),
                images=state.get("images"),
            )
