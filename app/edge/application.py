"""The FastAPI application: ``create_app(settings)`` and its lifespan.

Start-up: load the bundle onto the device (a failure stops start-up with one clear message), start
answering ``/health/live`` while the model warms up, then turn ready. Shut-down: not ready, drain the
queue within the drain timeout, stop the threads.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from app.edge.http_errors import install_error_handlers
from app.edge.routes import explain, model_info, operations, page, predict, v2
from app.edge.routes.auth import inference_dependencies
from app.edge.routes.dependencies import route_matcher
from app.edge.routes.docs import install_docs
from app.edge.routes.observer import RequestObserver
from app.model.bundle import BundleError
from app.model.devices import DeviceError, resolve_device
from app.model.pillow_setup import harden_pillow
from app.serving.metrics import ServiceMetrics
from app.serving.pipeline import InferencePipeline
from app.serving.runner import ModelRunner, RunnerOptions, replica_memory_fraction
from app.serving.service import InferenceService
from app.serving.state import ServiceState
from app.settings import Settings

logger = logging.getLogger("resnet_serve")
# The routes that run the model: behind the API keys, and admitted by the door before their bodies.
INFERENCE_ROUTERS = (predict.router, explain.router, v2.infer_router)


async def _warm_up(service: InferenceService, pipeline: InferencePipeline) -> None:
    try:
        seconds = await pipeline.start()
    except Exception as exc:
        logger.exception("warm-up failed")
        # Health routes answer without a key: the cause (paths, driver text) stays in the log.
        service.state.mark_failed(f"warm-up failed ({type(exc).__name__}); the server log has why")
        return
    service.metrics.set_warmup_seconds(seconds)
    service.state.mark_ready()
    logger.info(
        "ready: warmed up to batch size %d in %.1fs", service.settings.max_batch_size, seconds
    )


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    service: InferenceService = app.state.service
    settings = service.settings
    runner = app.state.preloaded_runner or await asyncio.to_thread(load_runner, settings)
    manifest = runner.bundle.manifest
    logger.info(
        "loaded %s (%s, %d classes) from %s on %s (%s)",
        manifest.name,
        manifest.arch,
        manifest.num_classes,
        settings.model_dir,
        runner.device,
        runner.precision,
    )
    metrics = service.metrics
    metrics.describe_model(
        manifest.name, manifest.arch, manifest.num_classes, runner.device, runner.precision
    )
    metrics.set_model_load_seconds(runner.load_seconds)
    if runner.on_cuda:
        metrics.watch_gpu(runner.device)
    harden_pillow()
    pipeline = InferencePipeline(runner, settings)
    service.pipeline = pipeline
    service.state.mark_warming_up()
    warm_up = asyncio.create_task(_warm_up(service, pipeline))
    if app.state.warm_before_accepting:
        # A replica sharing the port (app.edge.replicas) must not take connections it would answer
        # with 503 while the ready replicas could serve them: uvicorn accepts only after this.
        await warm_up
    try:
        yield
    finally:
        service.start_draining()
        warm_up.cancel()
        await service.stop()
        logger.info("stopped")


def load_runner(settings: Settings) -> ModelRunner:
    """Load the configured bundle onto the configured device; raises ``BundleError``/``DeviceError``."""
    options = RunnerOptions(
        max_batch_size=settings.max_batch_size,
        cuda_graphs=settings.cuda_graphs,
        batches_in_flight=settings.batches_in_flight,
        torch_threads=settings.torch_threads,
        device_memory_fraction=replica_memory_fraction(settings.workers),
    )
    device = resolve_device(settings.device)
    if settings.gpu_decode and device.type != "cuda":  # refused before the weights are loaded
        raise DeviceError(f"gpu_decode needs a CUDA device; the model would run on {device}")
    runner = ModelRunner.load(str(settings.model_dir), settings.device, settings.precision, options)
    try:
        check_abstain_labels(settings, runner.labels)
    except BundleError:
        runner.close()
        raise
    return runner


def check_abstain_labels(settings: Settings, labels: list[str]) -> None:
    """A misspelt ``abstain_labels`` entry would silently never match: refuse it instead."""
    unknown = sorted(settings.abstain_label_names - set(labels))
    if unknown:
        raise BundleError(
            f"{settings.model_dir}: abstain_labels names {', '.join(unknown)}, not among the "
            f"bundle's labels ({', '.join(labels)})"
        )


def create_app(
    settings: Settings | None = None,
    runner: ModelRunner | None = None,
    warm_before_accepting: bool = False,
) -> FastAPI:
    """Build an app for ``settings`` (read from the environment when omitted).

    Nothing is loaded here: the lifespan loads the model, unless the caller already did (``serve``
    does, so that a bad bundle is reported before uvicorn starts, as one line); either way a bad
    ``abstain_labels`` raises ``BundleError``. By default the port
    opens during warm-up (live, not ready); ``warm_before_accepting`` opens it only once warm.
    """
    settings = settings or Settings()
    if runner is not None:  # loaded by the caller, perhaps not by load_runner: check it here
        check_abstain_labels(settings, runner.labels)
    metrics = ServiceMetrics()
    service = InferenceService(settings=settings, state=ServiceState(), metrics=metrics)
    app = FastAPI(
        title="resnet-serve",
        summary="Image classification with dynamic batching for fine-tuned ResNets.",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,  # CDN-backed defaults; install_docs serves them offline
        redoc_url=None,
    )
    app.state.service = service
    app.state.preloaded_runner = runner
    app.state.warm_before_accepting = warm_before_accepting
    metrics.watch(
        in_flight=lambda: service.state.requests_in_flight,
        queue_depth=lambda: service.queue_depth,
        saturation=lambda: service.saturation,
    )
    install_error_handlers(app)
    keyed = inference_dependencies(settings)
    for router in INFERENCE_ROUTERS:
        app.include_router(router, dependencies=keyed)
    # The HTTP layer's door (app.edge.server) admits requests to exactly these routes.
    app.state.inference_route = route_matcher(
        [route for router in INFERENCE_ROUTERS for route in router.routes]
    )
    app.include_router(v2.router)
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
    app.add_middleware(RequestObserver, metrics=metrics, state=service.state)
    return app


def __getattr__(name: str) -> FastAPI:
    """``uvicorn app.edge.application:app`` support: the app is built on first access, never at import."""
    if name == "app":
        return create_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
