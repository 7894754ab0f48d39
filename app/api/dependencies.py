"""Typed access to what the lifespan put on ``app.state``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from app.metrics import ServiceMetrics
from app.pipeline import InferencePipeline
from app.settings import Settings
from app.state import ServiceState


@dataclass
class Service:
    """Everything a route may need; ``pipeline`` is set once the model is loaded."""

    settings: Settings
    state: ServiceState
    metrics: ServiceMetrics
    pipeline: InferencePipeline | None = None


async def get_service(request: Request) -> Service:
    return request.app.state.service


ServiceDep = Annotated[Service, Depends(get_service)]
