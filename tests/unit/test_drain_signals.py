"""``DrainingServer``'s signals, on their own: drain, cut the drain short, then stop."""

from __future__ import annotations

import signal
from types import SimpleNamespace

import uvicorn

from app.edge.server import DrainingServer
from app.serving.state import ServiceState


def _server(started: bool) -> DrainingServer:
    service = SimpleNamespace(state=ServiceState(drain_timeout_s=30))
    server = DrainingServer(uvicorn.Config(app=None), service)  # type: ignore[arg-type]
    server.started = started
    return server


def test_signals_during_start_up_stop_at_once_and_a_second_interrupt_forces_exit() -> None:
    server = _server(started=False)
    server.handle_exit(signal.SIGINT, None)
    assert server.should_exit and not server.state.draining
    server.handle_exit(signal.SIGINT, None)
    assert server.force_exit


def test_first_signal_drains_the_second_cuts_it_short_the_third_stops() -> None:
    server = _server(started=True)
    server.handle_exit(signal.SIGTERM, None)
    assert server.state.draining and not server.should_exit
    assert 29 < server.state.drain_left_s <= 30
    server.handle_exit(signal.SIGTERM, None)
    assert server.state.drain_left_s == 0 and not server.should_exit  # on_tick answers the rest
    server.handle_exit(signal.SIGTERM, None)
    assert server.should_exit
