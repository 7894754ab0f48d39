"""Run the app under uvicorn with a graceful drain on SIGTERM/SIGINT.

On the first signal readiness turns 503 and /predict refuses new work with 503, while the listener
stays open so orchestrators can still read the state. Once no request is in flight (or the drain
timeout has passed) uvicorn shuts down as usual: listener closed, lifespan shut-down, exit 0.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
from collections.abc import Iterator
from types import FrameType

import uvicorn

from app.edge.api_keys import ApiKeysError, load_api_keys
from app.edge.application import create_app
from app.edge.http_protocol import edge_protocol
from app.edge.logs import configure_logging
from app.edge.routes.dependencies import admission_door
from app.model.bundle import BundleError
from app.model.devices import DeviceError
from app.serving.builder import RunnerLoader, build_service, load_runner
from app.serving.service import InferenceService
from app.settings import Settings

logger = logging.getLogger("resnet_serve")
STARTUP_FAILED = 3  # uvicorn's own exit code for a failed lifespan start-up
SHUTDOWN_GRACE_S = 1.0  # what uvicorn still grants stragglers after the drain timeout


class DrainingServer(uvicorn.Server):
    """A uvicorn server that drains in-flight work before it stops listening, and exits 0."""

    def __init__(self, config: uvicorn.Config, service: InferenceService) -> None:
        super().__init__(config)
        self.state = service.state  # owns the drain and its one timer
        self.service = service
        self.cut_short = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.started and not self.state.draining:
            # First signal: stop admitting work but keep answering until the drain is over.
            self.state.mark_draining()
            return
        if self.state.draining and not self.cut_short and not self.should_exit:
            # Second signal: end the drain now; what is still queued or running gets its 503.
            logger.warning("second signal: ending the drain now")
            self.cut_short = True
            self.state.cut_drain_short()
            return
        super().handle_exit(sig, frame)  # a signal during start-up, or a third one: stop now

    async def on_tick(self, counter: int) -> bool:
        if self.state.draining and not self.should_exit:
            if self.state.drain_left_s <= 0:
                # Out of time: answer what is still queued or running with 503 now, rather than
                # let uvicorn cancel those requests into bare 500s.
                await self.service.end_drain()
                self.should_exit = True
            self.should_exit = self.should_exit or self.state.idle
        return await super().on_tick(counter)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # uvicorn re-raises the captured signal after shutting down, which turns a clean drain
        # into a death by SIGTERM (exit 143); install the handlers without that step.
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        signals = (signal.SIGINT, signal.SIGTERM)
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in signals}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def serve(
    settings: Settings, sock: socket.socket | None = None, load: RunnerLoader = load_runner
) -> int:
    """Serve until a signal; returns the process exit code.

    ``sock`` is a listening socket shared with other replicas (``app.edge.replicas``); without it uvicorn
    binds ``settings.host:port`` itself. ``load`` builds the runner (benchmarks swap the model).
    """
    configure_logging(settings.log_format, settings.log_level)
    try:
        load_api_keys(settings)  # a missing key file is reported before the model loads
        service = build_service(settings, load)
        app = create_app(service, warm_before_accepting=sock is not None)
    except (ApiKeysError, BundleError, DeviceError) as exc:
        logger.error("start-up failed: %s", exc)
        return STARTUP_FAILED
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        lifespan="on",
        http=edge_protocol(
            settings,
            door=admission_door(service, app.state.inference_route),
            count_rejection=service.metrics.count_rejection,
        ),
        # uvicorn annotates these int but hands them to loop.call_later: fractions of a second work.
        timeout_keep_alive=settings.keep_alive_timeout_s,  # type: ignore[arg-type]  # a float works
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=SHUTDOWN_GRACE_S,  # type: ignore[arg-type]  # a float works
        server_header=False,
    )
    server = DrainingServer(config, service)
    server.run(sockets=None if sock is None else [sock])
    code = 0 if server.started else STARTUP_FAILED
    if any(pipeline.threads_stuck for pipeline in service.pipelines):
        # A hung forward pass cannot be interrupted, and the interpreter would wait for its
        # thread forever on the way out: leave without it.
        logging.shutdown()
        os._exit(code)
    return code
