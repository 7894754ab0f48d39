"""The FastAPI application: ``create_app(service)`` and its lifespan.

The service comes built (``app.serving.builder``: a bad bundle has already stopped start-up with
one clear message). Start-up: answer ``/health/live`` while the model warms up, then turn ready.
Shut-down: not ready, drain the queue within the drain timeout, stop the threads.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from app.edge.grpc.endpoint import GrpcEndpoint
from app.edge.http_errors import install_error_handlers
from app.edge.routes import explain, model_info, operations, page, predict, repository, v2
from app.edge.routes.auth import inference_dependencies
from app.edge.routes.dependencies import route_matcher
from app.edge.routes.docs import install_docs
from app.edge.routes.observer import RequestObserver
from app.model.pillow_setup import harden_pillow
from app.serving.builder import build_service
from app.serving.repository import ModelRepository
from app.serving.service import InferenceService
from app.settings import Settings

logger = logging.getLogger("resnet_serve")
# The routes that run the model: behind the API keys, and admitted by the door before their bodies.
INFERENCE_ROUTERS = (predict.router, explain.router, v2.infer_router)


async def _warm_up(service: InferenceService) -> None:
    try:
        seconds = await service.start()
    except Exception:
        logger.exception("warm-up failed")
        return
    served = ", ".join(
        f"{name} to batch size {model.settings.max_batch_size}"
        for name, model in service.models.items()
    )
    logger.info("ready: warmed up %s in %.1fs", served, seconds)


def _poll_versions(repository: ModelRepository) -> asyncio.Task[None] | None:
    """Poll mode (``MODEL_POLL_S``): new versions, and new models, go live as they appear."""
    if not repository.service.settings.model_poll_s:
        return None
    return asyncio.create_task(repository.run_polling())


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    service: InferenceService = app.state.service
    grpc: GrpcEndpoint | None = app.state.grpc
    harden_pillow()
    warm_up = asyncio.create_task(_warm_up(service))
    if app.state.warm_before_accepting:
        # A replica sharing the port (app.edge.replicas) must not take connections it would answer
        # with 503 while the ready replicas could serve them: uvicorn accepts only after this.
        await warm_up
    polling = _poll_versions(app.state.repository)
    try:
        if grpc is not None:
            await grpc.start()
        yield
    finally:
        if polling is not None:
            polling.cancel()
            await asyncio.gather(polling, return_exceptions=True)
        warm_up.cancel()
        if grpc is not None:
            service.state.mark_draining()  # gRPC calls still running finish within the drain
            await grpc.stop(service.state.drain_left_s)
        await service.stop()
        logger.info("stopped")


def create_app(service: InferenceService, warm_before_accepting: bool = False) -> FastAPI:
    """Build the app that serves ``service``. By default the port opens during warm-up (live, not
    ready); ``warm_before_accepting`` opens it only once warm."""
    settings = service.settings
    app = FastAPI(
        title="resnet-serve",
        summary="Image classification with dynamic batching for fine-tuned ResNets.",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,  # CDN-backed defaults; install_docs serves them offline
        redoc_url=None,
    )
    app.state.service = service
    app.state.warm_before_accepting = warm_before_accepting
    app.state.repository = ModelRepository(service)
    app.state.grpc = GrpcEndpoint(service, app.state.repository) if settings.grpc_port else None
    install_error_handlers(app)
    keyed = inference_dependencies(settings)
    for router in INFERENCE_ROUTERS:
        app.include_router(router, dependencies=keyed)
    # The HTTP layer's door (app.edge.server) admits requests to exactly these routes.
    app.state.inference_route = route_matcher(
        [route for router in INFERENCE_ROUTERS for route in router.routes]
    )
    app.include_router(v2.router)
    app.include_router(repository.router, dependencies=keyed)  # operators' and CI's, keyed
    app.include_router(operations.router)
    app.include_router(model_info.router)
    app.include_router(page.router)
    install_docs(app)
    if origins := [origin.strip() for origin in settings.cors_origins.split(",") if origin.strip()]:
        # Inside the observer, so preflights are logged and counted like any request.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
            expose_headers=["X-Request-ID", *explain.EXPLAINED_HEADERS],
        )
    app.add_middleware(
        RequestObserver,
        metrics=service.metrics,
        state=service.state,
        inference_route=app.state.inference_route,
    )
    return app


def __getattr__(name: str) -> FastAPI:
    """``uvicorn app.edge.application:app`` support: the app (and its model, from the settings in
    the environment) is built on first access, never at import."""
    if name == "app":
        return create_app(build_service(Settings()))
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
