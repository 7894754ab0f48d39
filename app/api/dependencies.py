"""Typed access to what the lifespan put on ``app.state``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from app.api.errors import ApiError, retry_after_headers
from app.metrics import ServiceMetrics
from app.pipeline import InferencePipeline
from app.settings import Settings
from app.state import ServiceState

INFERENCE_PATHS = frozenset({b"/predict"})  # the routes behind admission


@dataclass
class Service:
    """Everything a route may need; ``pipeline`` is set once the model is loaded."""

    settings: Settings
    state: ServiceState
    metrics: ServiceMetrics
    pipeline: InferencePipeline | None = None

    def refuse_at_door(self, method: bytes, path: bytes) -> ApiError | None:
        """The HTTP layer's check as a request's headers complete, before the app sees it.

        An inference request that admission would refuse is answered 503 from there, at a
        fraction of the cost of the route's own refusal: under a flood of clients that do not back
        off, refusals are most of the work. Counted in the metrics; not access-logged one by one
        (a flood would turn the log into a second attack).
        """
        if method != b"POST" or path not in INFERENCE_PATHS or self.pipeline is None:
            return None
        refused = self.pipeline.gate.refusal()
        if refused is None:
            return None
        self.metrics.refused.inc()
        self.metrics.requests.labels(path.decode(), "503").inc()
        headers = retry_after_headers(refused.retry_after_s)
        return ApiError(503, "overloaded", str(refused), headers)


async def get_service(request: Request) -> Service:
    return request.app.state.service


ServiceDep = Annotated[Service, Depends(get_service)]
