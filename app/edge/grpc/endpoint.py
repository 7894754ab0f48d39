"""The gRPC server's life: built with the app, started and stopped by its lifespan.

One ``grpc.aio`` server on the event loop that runs the HTTP app, so both transports share the one
inference service and its batcher. Its limits are the HTTP ones: a message over ``max_body_bytes``
is refused by gRPC itself (``RESOURCE_EXHAUSTED``) before it is read whole, and concurrent calls are
bounded. Replicas (``WORKERS``) bind the same port, as they do over HTTP (``SO_REUSEPORT``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import grpc
from grpc_health.v1 import health_pb2_grpc
from tritonclient.grpc import service_pb2_grpc

from app.edge.api_keys import KeyRing, load_api_keys
from app.edge.grpc.servicer import HealthServicer, InferenceServicer
from app.serving.repository import ModelRepository
from app.serving.service import InferenceService

logger = logging.getLogger("resnet_serve")
HEALTH_REFRESH_S = 1.0  # how soon a Watch stream sees readiness change
# Calls at once beyond the admitted inference requests: probes and metadata while under load.
SPARE_CALLS = 64


class GrpcPortError(RuntimeError):
    """The gRPC port cannot be bound; start-up must stop."""


class GrpcEndpoint:
    """The gRPC server for ``service``: ``start`` binds ``grpc_port``, ``stop`` drains it."""

    def __init__(self, service: InferenceService, repository: ModelRepository) -> None:
        settings = service.settings
        self.service = service
        self.address = f"{settings.host}:{settings.grpc_port}"
        keys = load_api_keys(settings)
        self.servicer = InferenceServicer(service, repository, KeyRing(keys) if keys else None)
        self.health = HealthServicer(service)
        self.server: grpc.aio.Server | None = None
        self._refresher: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Bind and serve; ``GrpcPortError`` when the port cannot be bound. On the running loop:
        a ``grpc.aio`` server belongs to the loop it is made on."""
        settings = self.service.settings
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", settings.max_body_bytes),
                # Replicas share the port; a lone server must not share it by mistake.
                ("grpc.so_reuseport", int(settings.workers > 1)),
            ],
            maximum_concurrent_rpcs=settings.max_requests_in_flight + SPARE_CALLS,
        )
        service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(self.servicer, server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        try:
            port = server.add_insecure_port(self.address)
        except RuntimeError as exc:
            raise GrpcPortError(f"cannot bind the gRPC port {self.address}: {exc}") from None
        if port == 0:
            raise GrpcPortError(f"cannot bind the gRPC port {self.address}")
        await server.start()
        self.server = server
        await self.health.refresh()
        self._refresher = asyncio.create_task(self._refresh_health())
        logger.info("gRPC listening on %s", self.address)

    async def _refresh_health(self) -> None:
        while True:
            await asyncio.sleep(HEALTH_REFRESH_S)
            await self.health.refresh()

    async def stop(self, grace_s: float) -> None:
        """Refuse new calls, let those running finish within ``grace_s``, then close."""
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
        if self.server is None:
            return
        await self.health.refresh()  # draining: NOT_SERVING to any watcher
        await self.server.stop(grace_s)
