"""Run the app under uvicorn with a graceful drain on SIGTERM/SIGINT.

Readiness turns 503 the moment the signal arrives; uvicorn then stops accepting connections, lets
in-flight requests finish (up to the drain timeout) and runs the lifespan shut-down.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType

import uvicorn

from app.logs import configure_logging
from app.main import create_app
from app.settings import Settings

STARTUP_FAILED = 3  # uvicorn's own exit code for a failed lifespan start-up


class DrainingServer(uvicorn.Server):
    """A uvicorn server that tells the app it is draining before shutting down, and exits 0."""

    def __init__(self, config: uvicorn.Config, on_drain: Callable[[], None]) -> None:
        super().__init__(config)
        self.on_drain = on_drain

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.on_drain()
        super().handle_exit(sig, frame)

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


def serve(settings: Settings) -> int:
    """Serve until a signal; returns the process exit code."""
    configure_logging(settings.log_format, settings.log_level)
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        lifespan="on",
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=settings.drain_timeout_s,
        server_header=False,
    )
    server = DrainingServer(config, on_drain=app.state.service.state.mark_draining)
    server.run()
    return 0 if server.started else STARTUP_FAILED
