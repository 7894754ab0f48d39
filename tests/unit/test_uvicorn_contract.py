"""What the HTTP edge (app/edge/http_protocol.py) takes from uvicorn's httptools protocol, pinned.

``EdgeHttpProtocol`` subclasses uvicorn's ``HttpToolsProtocol``: it overrides parser callbacks and
calls methods and reads attributes that are uvicorn's internals, not its API. The behaviour is
tested over real sockets (tests/api/test_edge_limits.py, test_slow_readers.py); this names the
internals themselves, so that a uvicorn upgrade that renames or drops one fails here, with the name,
rather than as a confusing timeout elsewhere.
"""

from __future__ import annotations

import ast
import inspect
import textwrap

import uvicorn
from uvicorn.protocols.http import flow_control, httptools_impl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

# Methods the edge overrides (and calls through super()) or calls on its own.
PROTOCOL_METHODS = {
    "connection_made": ["transport"],
    "connection_lost": ["exc"],
    "data_received": ["data"],
    "pause_writing": [],
    "resume_writing": [],
    "on_message_begin": [],
    "on_header": ["name", "value"],
    "on_headers_complete": [],
    "on_body": ["body"],
    "on_message_complete": [],
    "on_response_complete": [],
    "timeout_keep_alive_handler": [],
    "handle_websocket_upgrade": [],
    "_start_asgi_task": ["cycle", "app"],
    "_unset_keepalive_if_required": [],
    "_should_upgrade": [],
    "_unsupported_upgrade_warning": [],
}
# Attributes the edge reads or writes, by the object that holds them.
PROTOCOL_ATTRIBUTES = {
    "transport", "flow", "parser", "cycle", "headers", "url", "pipeline", "server_state",
    "logger", "client", "loop", "expect_100_continue", "timeout_keep_alive",
    "timeout_keep_alive_task",
}  # fmt: skip
CYCLE_ATTRIBUTES = {
    "response_complete", "response_started", "more_body", "keep_alive", "disconnected",
    "message_event",
}  # fmt: skip


def _assigned_attributes(cls: type) -> set[str]:
    """The names ``cls``'s methods assign on ``self`` (``self.x = ...``)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    return {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.ctx, ast.Store)
        and isinstance(node.value, ast.Name)
        and node.value.id == "self"
    }


def test_the_protocol_methods_the_edge_relies_on_exist_with_their_parameters() -> None:
    changed = {}
    for name, parameters in PROTOCOL_METHODS.items():
        method = getattr(HttpToolsProtocol, name, None)
        found = None if method is None else list(inspect.signature(method).parameters)[1:]
        if found != parameters:
            changed[name] = found
    assert changed == {}, f"uvicorn {uvicorn.__version__} changed these; re-read http_protocol.py"


def test_the_protocol_and_cycle_attributes_the_edge_relies_on_are_still_set() -> None:
    assert PROTOCOL_ATTRIBUTES - _assigned_attributes(HttpToolsProtocol) == set()
    assert CYCLE_ATTRIBUTES - _assigned_attributes(RequestResponseCycle) == set()
    assert "write_paused" in _assigned_attributes(flow_control.FlowControl)
    assert set(httptools_impl.STATUS_LINE) >= {400, 408, 413, 431, 503}
