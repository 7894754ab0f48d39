"""``inference.GRPCInferenceService`` over the one inference service, and ``grpc.health.v1``.

Each method is the gRPC twin of a /v2 route: the same objects from ``app.edge.open_inference``, the
same ``InferenceService`` call for inference, and failures mapped once (``app.edge.http_errors``'s
``as_api_error``) from the HTTP status to the gRPC code. What Triton has and this server does not
(shared memory, tracing, logging, streaming) answers ``UNIMPLEMENTED``; the repository methods
answer from ``app.serving.repository``, behind the API keys.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2
from tritonclient.grpc import model_config_pb2, service_pb2, service_pb2_grpc

from app.edge.api_keys import KeyRing
from app.edge.grpc.messages import as_message, infer_request, infer_response
from app.edge.http_errors import ApiError, as_api_error
from app.edge.logs import log_access
from app.edge.open_inference import model
from app.serving.repository import ModelRepository
from app.serving.service import InferenceService

SERVICE_NAME = "inference.GRPCInferenceService"
LIVENESS = "liveness"  # the health service name a liveness probe asks about
REQUEST_ID_KEY = "x-request-id"
MAX_REQUEST_ID_LENGTH = 128
# Each HTTP status an ApiError carries, as the gRPC code that means the same.
GRPC_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    404: grpc.StatusCode.NOT_FOUND,
    408: grpc.StatusCode.DEADLINE_EXCEEDED,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    499: grpc.StatusCode.CANCELLED,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}
T = TypeVar("T")


def _request_id(context: grpc.aio.ServicerContext) -> str:
    """The client's ``x-request-id`` if short and printable, else a new one (as over HTTP)."""
    for key, value in context.invocation_metadata() or ():
        if key == REQUEST_ID_KEY and isinstance(value, str):
            text = value.strip()
            if 0 < len(text) <= MAX_REQUEST_ID_LENGTH and text.isprintable():
                return text
    return uuid.uuid4().hex


def _bearer_token(context: grpc.aio.ServicerContext) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization" and isinstance(value, str):
            scheme, _, token = value.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None


class InferenceServicer(service_pb2_grpc.GRPCInferenceServiceServicer):
    """The KServe v2 / Triton gRPC methods, each answering from ``service``."""

    def __init__(
        self, service: InferenceService, repository: ModelRepository, keys: KeyRing | None
    ) -> None:
        self.service = service
        self.repository = repository
        self.keys = keys

    async def _answer(
        self, method: str, context: grpc.aio.ServicerContext, work: Callable[[], Awaitable[T]]
    ) -> T:
        """``work()``, counted, timed and logged as an HTTP request is; a failure aborts the call
        with the gRPC code of the HTTP status it would have had."""
        request_id = _request_id(context)
        await context.send_initial_metadata(((REQUEST_ID_KEY, request_id),))
        started = time.perf_counter()
        route = f"/{SERVICE_NAME}/{method}"
        try:
            result = await work()
        except asyncio.CancelledError:  # the client left, or its deadline passed
            self._observe(route, grpc.StatusCode.CANCELLED.name, started, request_id)
            raise
        except Exception as exc:
            timeout_s = self.service.settings.request_timeout_s
            error = exc if isinstance(exc, ApiError) else as_api_error(exc, request_id, timeout_s)
            code = GRPC_CODES.get(error.status, grpc.StatusCode.INTERNAL)
            self.service.metrics.count_rejection(error.code)
            self._observe(route, code.name, started, request_id)
            if error.headers and "Retry-After-Ms" in error.headers:
                context.set_trailing_metadata(
                    (("retry-after-ms", error.headers["Retry-After-Ms"]),)
                )
            await context.abort(code, error.message)
            raise  # abort raises; this line is never reached
        self._observe(route, grpc.StatusCode.OK.name, started, request_id)
        return result

    def _observe(self, route: str, status: str, started: float, request_id: str) -> None:
        elapsed = time.perf_counter() - started
        metrics = self.service.metrics
        metrics.requests.labels(route, status).inc()
        metrics.latency.labels(route).observe(elapsed)
        log_access("GRPC", route, route, status, elapsed, request_id)

    async def ServerLive(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        live = self.service.health().live
        return await self._answer(
            "ServerLive", context, _value(service_pb2.ServerLiveResponse(live=live))
        )

    async def ServerReady(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        ready = self.service.health().ready
        return await self._answer(
            "ServerReady", context, _value(service_pb2.ServerReadyResponse(ready=ready))
        )

    async def ModelReady(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        async def ready() -> Any:
            ready = self.service.model_ready(request.name, request.version)
            return service_pb2.ModelReadyResponse(ready=ready)

        return await self._answer("ModelReady", context, ready)

    async def ServerMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        message = as_message(model.server_metadata(), service_pb2.ServerMetadataResponse())
        return await self._answer("ServerMetadata", context, _value(message))

    async def ModelMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        async def metadata() -> Any:
            metadata = model.model_metadata(self.service, request.name, request.version)
            return as_message(metadata, service_pb2.ModelMetadataResponse())

        return await self._answer("ModelMetadata", context, metadata)

    async def ModelConfig(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        async def config() -> Any:
            config = model.model_config(self.service, request.name, request.version)
            return service_pb2.ModelConfigResponse(
                config=as_message(config, model_config_pb2.ModelConfig())
            )

        return await self._answer("ModelConfig", context, config)

    async def ModelStatistics(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        async def statistics() -> Any:
            # None named: every model, as Triton answers.
            statistics = model.model_statistics(
                self.service, request.name or None, request.version or None
            )
            return as_message(statistics, service_pb2.ModelStatisticsResponse())

        return await self._answer("ModelStatistics", context, statistics)

    async def ModelInfer(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        async def infer() -> Any:
            self._authorize(context)
            return await self._infer(request, context)

        state = self.service.state
        state.requests_in_flight += 1  # counted as an HTTP inference request is: the drain waits
        try:
            return await self._answer("ModelInfer", context, infer)
        finally:
            state.requests_in_flight -= 1

    async def RepositoryIndex(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        async def index() -> Any:
            self._authorize(context)
            entries = self.repository.index(ready_only=request.ready)
            return service_pb2.RepositoryIndexResponse(
                models=[service_pb2.RepositoryIndexResponse.ModelIndex(**vars(e)) for e in entries]
            )

        return await self._answer("RepositoryIndex", context, index)

    async def RepositoryModelLoad(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        async def load() -> Any:
            self._authorize(context)
            await self.repository.load(request.model_name)
            return service_pb2.RepositoryModelLoadResponse()

        return await self._answer("RepositoryModelLoad", context, load)

    async def RepositoryModelUnload(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        async def unload() -> Any:
            self._authorize(context)
            await self.repository.unload(request.model_name)
            return service_pb2.RepositoryModelUnloadResponse()

        return await self._answer("RepositoryModelUnload", context, unload)

    def _authorize(self, context: grpc.aio.ServicerContext) -> None:
        if self.keys is None:
            return
        token = _bearer_token(context)
        if token is None:
            raise ApiError(
                401,
                "unauthorized",
                "missing bearer token: send metadata 'authorization: Bearer <key>'",
            )
        if not self.keys.holds(token):
            raise ApiError(401, "unauthorized", "invalid API key")

    async def _infer(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        service = self.service
        settings = service.settings
        # Admitted by the message's size as HTTP is by Content-Length; the client's deadline
        # counts when it is sooner than the service's own.
        with service.begin(
            str(request.ByteSize()),
            context.time_remaining(),
            request.model_name,
            request.model_version,
        ) as call:
            async with call.timeout():
                parsed = await call.parse(
                    infer_request,
                    request,
                    call.version.image_shape,
                    settings.max_images_per_request,
                )
                results = await (
                    call.classify_encoded(parsed.inputs)
                    if isinstance(parsed.inputs, list)
                    else call.classify_pixels(parsed.inputs)
                )
        ran_on = call.version  # the version it was admitted on, whatever is served now
        return infer_response(call.model, ran_on.version, parsed, results, ran_on.manifest.labels)


def _value(message: Any) -> Callable[[], Awaitable[Any]]:
    async def answer() -> Any:
        return message

    return answer


class HealthServicer(health.aio.HealthServicer):
    """``grpc.health.v1.Health`` for Kubernetes' gRPC probes: ``""`` and the inference service
    are ``SERVING`` while the model is ready (readiness), ``liveness`` while the process is live.
    The status is read from the service at each ``Check``; ``Watch`` sees it as ``refresh`` sets it."""

    def __init__(self, service: InferenceService) -> None:
        super().__init__()
        self.service = service

    async def refresh(self) -> None:
        report = self.service.health()
        ready = _status(report.ready)
        for name in (health.OVERALL_HEALTH, SERVICE_NAME):
            await self.set(name, ready)
        await self.set(LIVENESS, _status(report.live))

    async def Check(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await self.refresh()
        return await super().Check(request, context)


def _status(serving: bool) -> Any:
    return (
        health_pb2.HealthCheckResponse.SERVING
        if serving
        else health_pb2.HealthCheckResponse.NOT_SERVING
    )
