"""What the HTTP edge (app/edge/http_protocol.py) takes from uvicorn's httptools protocol, pinned.

``EdgeHttpProtocol`` subclasses uvicorn's ``HttpToolsProtocol`` because no uvicorn setting or ASGI
layer can limit a request's head or time, refuse before the body, or watch an answer's writes (the
module docstring says why for each). Overriding, calling and reading uvicorn's internals is the
price; this file is the list of them, so that an upgrade that renames, re-signs or changes one
fails here, naming it, rather than as a timeout in the socket tests
(tests/api/test_edge_limits.py, test_slow_readers.py):

- the names: every method the edge overrides or calls and every attribute it reads or sets, with
  a test that the list matches what http_protocol.py actually uses;
- the behaviours: what those names must do, driven on uvicorn's own class over a fake transport;
- the copied paths: uvicorn methods the edge repeats rather than extends, fingerprinted, since a
  change there leaves the copy behind without breaking anything a behaviour test could see.
"""

from __future__ import annotations

import ast
import asyncio
import hashlib
import inspect
import textwrap
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httptools
import pytest
import uvicorn
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.server import ServerState

from app.edge import http_protocol
from app.edge.http_protocol import EdgeHttpProtocol

UVICORN = f"uvicorn {uvicorn.__version__}"

# Methods of HttpToolsProtocol the edge overrides (and calls through super()) or calls itself, with
# their parameters after self.
PROTOCOL_METHODS = {
    "__init__": ["config", "server_state", "app_state", "_loop"],
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
    "handle_websocket_upgrade": [],
    "_start_asgi_task": ["cycle", "app"],
    "_unset_keepalive_if_required": [],
    "_should_upgrade": [],
    "_unsupported_upgrade_warning": [],
}
# Attributes of HttpToolsProtocol the edge reads (``url`` through getattr: it is set per request).
PROTOCOL_ATTRIBUTES = {
    "transport", "parser", "cycle", "headers", "url", "server_state", "client", "loop",
    "expect_100_continue",
}  # fmt: skip
# Attributes of RequestResponseCycle the edge reads or sets.
CYCLE_ATTRIBUTES = {
    "response_complete", "response_started", "more_body", "keep_alive", "disconnected",
    "message_event",
}  # fmt: skip
# uvicorn code the edge repeats rather than extends, by the ast.unparse of its source; a new
# fingerprint means: read uvicorn's new version, bring the edge's copy in line, then update it here.
COPIED_PATHS = {
    # EdgeHttpProtocol.data_received and _feed: stop the keep-alive timer, feed, hand an upgrade on.
    "data_received": "8583b7d501b5b5dddad7f37b563f35deb5ee1e6fb3d07204cbc8d1e5dc3e186f",
    # EdgeHttpProtocol.on_message_complete's idle timer after a dropped body: uvicorn's keep-alive
    # as armed after an answer and as it ends.
    "on_response_complete": "3b835da51ff0d85ffa87d92cab123b7c612f2765c23a15ec1f94cf325e1057b4",
    "timeout_keep_alive_handler": "a2da797910dbc9d8501df505e864fc8ed4e516e22a5095902cb1a769b3d4ec32",
}


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


def _fingerprint(function: Callable[..., Any]) -> str:
    """The code of ``function``, without its docstring, comments and layout, hashed."""
    definition = ast.parse(textwrap.dedent(inspect.getsource(function))).body[0]
    assert isinstance(definition, ast.FunctionDef)
    if ast.get_docstring(definition) is not None:
        definition.body = definition.body[1:]
    return hashlib.sha256(ast.unparse(definition).encode()).hexdigest()


def _edge_class() -> ast.ClassDef:
    tree = ast.parse(Path(inspect.getfile(http_protocol)).read_text())
    return next(
        node
        for node in tree.body
        if isinstance(node, ast.ClassDef) and node.name == EdgeHttpProtocol.__name__
    )


def _is_self(node: ast.expr) -> bool:
    return isinstance(node, ast.Name) and node.id == "self"


def _names_the_edge_takes_from_uvicorn() -> tuple[set[str], set[str]]:
    """What EdgeHttpProtocol's source takes from its base: names used on ``self`` or ``super()``
    that it does not define itself, with the methods it overrides; and what it uses on a cycle."""
    cls = _edge_class()
    methods = {node.name for node in cls.body if isinstance(node, ast.FunctionDef)}
    init = next(
        node for node in cls.body if isinstance(node, ast.FunctionDef) and node.name == "__init__"
    )
    own = methods | {
        node.target.id
        for node in cls.body
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
    }
    own |= {
        node.attr
        for node in ast.walk(init)
        if isinstance(node, ast.Attribute)
        and isinstance(node.ctx, ast.Store)
        and _is_self(node.value)
    }
    used: set[str] = set()
    on_cycle: set[str] = set()
    for node in ast.walk(cls):
        if isinstance(node, ast.Attribute):
            value = node.value
            if _is_self(value) or (
                isinstance(value, ast.Call) and getattr(value.func, "id", "") == "super"
            ):
                used.add(node.attr)
            elif (isinstance(value, ast.Name) and value.id in {"cycle", "answering"}) or (
                isinstance(value, ast.Attribute) and _is_self(value.value) and value.attr == "cycle"
            ):
                on_cycle.add(node.attr)
        elif isinstance(node, ast.Call) and getattr(node.func, "id", "") == "getattr":
            target, name = node.args[0], node.args[1]
            if _is_self(target) and isinstance(name, ast.Constant):
                used.add(name.value)
    # Overrides: methods that extend uvicorn's through super(), and asyncio's callbacks, which
    # replace uvicorn's (found from the edge's source alone, whatever uvicorn is installed).
    overridden = {name for name in methods if hasattr(asyncio.Protocol, name)}
    overridden |= {
        method.name
        for method in cls.body
        if isinstance(method, ast.FunctionDef)
        for node in ast.walk(method)
        if isinstance(node, ast.Attribute)
        and node.attr == method.name
        and isinstance(node.value, ast.Call)
        and getattr(node.value.func, "id", "") == "super"
    }
    return (used - own) | overridden, on_cycle


# Names


def test_the_pinned_names_are_exactly_what_the_edge_takes_from_uvicorn() -> None:
    from_uvicorn, on_cycle = _names_the_edge_takes_from_uvicorn()
    pinned = set(PROTOCOL_METHODS) | PROTOCOL_ATTRIBUTES
    assert from_uvicorn == pinned, (
        f"http_protocol.py now takes {sorted(from_uvicorn - pinned)} from uvicorn without a pin here, "
        f"and no longer takes {sorted(pinned - from_uvicorn)}: update PROTOCOL_METHODS/ATTRIBUTES"
    )
    assert on_cycle == CYCLE_ATTRIBUTES, f"the edge now uses {sorted(on_cycle)} on a cycle"


def test_the_protocol_methods_the_edge_relies_on_exist_with_their_parameters() -> None:
    changed = {}
    for name, parameters in PROTOCOL_METHODS.items():
        method = HttpToolsProtocol.__dict__.get(name)
        found = None if method is None else list(inspect.signature(method).parameters)[1:]
        if found != parameters:
            changed[name] = found
    assert changed == {}, (
        f"{UVICORN} changed or dropped these HttpToolsProtocol methods that app/edge/http_protocol.py "
        f"overrides or calls (name: parameters now, None if gone): {changed}"
    )


def test_the_protocol_and_cycle_attributes_the_edge_relies_on_are_still_set() -> None:
    missing = PROTOCOL_ATTRIBUTES - _assigned_attributes(HttpToolsProtocol)
    assert missing == set(), f"{UVICORN}'s HttpToolsProtocol no longer sets {sorted(missing)}"
    missing = CYCLE_ATTRIBUTES - _assigned_attributes(RequestResponseCycle)
    assert missing == set(), f"{UVICORN}'s RequestResponseCycle no longer sets {sorted(missing)}"
    assert "default_headers" in _assigned_attributes(ServerState), (
        f"{UVICORN}'s ServerState no longer sets default_headers (the edge's error answers use them)"
    )
    for name in ("feed_data", "get_method", "should_keep_alive"):
        assert hasattr(httptools.HttpRequestParser, name), f"httptools' parser has no {name}"


def test_the_code_paths_the_edge_copies_are_unchanged() -> None:
    changed = {
        name: _fingerprint(getattr(HttpToolsProtocol, name))
        for name, fingerprint in COPIED_PATHS.items()
        if _fingerprint(getattr(HttpToolsProtocol, name)) != fingerprint
    }
    assert changed == {}, (
        f"{UVICORN} changed HttpToolsProtocol's {sorted(changed)}, which app/edge/http_protocol.py "
        f"repeats (see COPIED_PATHS): bring the copy in line, then pin the new fingerprints {changed}"
    )


# Behaviours, on uvicorn's own protocol over a fake transport


class FakeTransport(asyncio.Transport):
    """A connection that records what is written and whether it was closed."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_write_buffer_size(self) -> int:
        return 0

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


App = Callable[[Any, Any, Any], Awaitable[None]]


async def answer_ok(scope: Any, receive: Any, send: Any) -> None:
    """Answers 200 without reading the body."""
    headers = [(b"content-length", b"2")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"ok"})


def connect(
    protocol_class: type[HttpToolsProtocol], app: App = answer_ok
) -> tuple[HttpToolsProtocol, FakeTransport]:
    config = Config(
        app=app, http=protocol_class, log_config=None, lifespan="off", proxy_headers=False
    )
    config.load()
    protocol = protocol_class(config, ServerState(), {}, asyncio.get_running_loop())
    transport = FakeTransport()
    protocol.connection_made(transport)
    return protocol, transport


async def settle() -> None:
    """Let the app tasks the protocol started run as far as they can."""
    for _ in range(20):
        await asyncio.sleep(0)


GET = b"GET /a HTTP/1.1\r\nHost: t\r\n\r\n"


def test_a_custom_protocol_class_is_what_uvicorn_serves_with() -> None:
    config = Config(app=answer_ok, http=EdgeHttpProtocol, log_config=None)
    config.load()
    assert config.http_protocol_class is EdgeHttpProtocol, (
        f"{UVICORN} no longer serves with the class given as Config(http=...)"
    )


def test_the_head_is_on_the_protocol_when_headers_complete() -> None:
    seen: dict[str, object] = {}

    class Probe(HttpToolsProtocol):
        def on_headers_complete(self) -> None:
            seen.update(url=self.url, headers=list(self.headers), expect=self.expect_100_continue)
            seen.update(method=self.parser.get_method(), keep_alive=self.parser.should_keep_alive())
            super().on_headers_complete()
            seen["cycle"] = self.cycle

    async def scenario() -> None:
        protocol, _ = connect(Probe)
        protocol.data_received(
            b"POST http://h/%70redict?x=1 HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
            b"X-Key: Value\r\nContent-Length: 3\r\n\r\n"
        )
        await settle()

    asyncio.run(scenario())
    assert seen["url"] == b"http://h/%70redict?x=1", f"{UVICORN}: self.url is not the raw target"
    assert seen["headers"] == [
        (b"host", b"t"),
        (b"expect", b"100-continue"),
        (b"x-key", b"Value"),
        (b"content-length", b"3"),
    ], f"{UVICORN}: self.headers is not the lower-cased (name, value) list"
    assert seen["expect"] is True, f"{UVICORN}: self.expect_100_continue no longer set by on_header"
    assert (seen["method"], seen["keep_alive"]) == (b"POST", True)
    assert isinstance(seen["cycle"], RequestResponseCycle), (
        f"{UVICORN}: on_headers_complete no longer builds self.cycle (the door runs before it)"
    )


def test_every_request_is_started_through_start_asgi_task_pipelined_ones_included() -> None:
    started: list[RequestResponseCycle] = []
    completed: list[RequestResponseCycle] = []

    class Probe(HttpToolsProtocol):
        def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
            started.append(cycle)
            super()._start_asgi_task(cycle, app)

        def on_response_complete(self) -> None:
            completed.append(self.cycle)
            super().on_response_complete()

    async def scenario() -> None:
        protocol, transport = connect(Probe)
        protocol.data_received(GET + GET)
        second = protocol.cycle
        assert len(started) == 1 and started[0] is not second, (
            f"{UVICORN}: the first request is not started through _start_asgi_task at once"
        )
        await settle()
        assert started == [started[0], second], (
            f"{UVICORN}: a pipelined request is no longer started through _start_asgi_task from "
            "on_response_complete; EdgeHttpProtocol.answering would miss it"
        )
        assert transport.written.count(b"HTTP/1.1 200 OK") == 2

    asyncio.run(scenario())
    assert len(completed) == 2, (
        f"{UVICORN}: the cycle no longer calls the protocol's on_response_complete once complete"
    )


def test_an_answer_before_the_body_leaves_more_body_set() -> None:
    completed: list[tuple[bool, bool]] = []

    class Probe(HttpToolsProtocol):
        def on_response_complete(self) -> None:
            completed.append((self.cycle.response_complete, self.cycle.more_body))
            super().on_response_complete()

    async def scenario() -> None:
        protocol, _ = connect(Probe)
        protocol.data_received(b"POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n")
        await settle()

    asyncio.run(scenario())
    assert completed == [(True, True)], (
        f"{UVICORN}: an answer before the body no longer shows as response_complete with "
        "more_body; the edge would not drop the rest of the body within its limits"
    )


def test_keep_alive_false_closes_after_the_answer() -> None:
    async def scenario() -> FakeTransport:
        release = asyncio.Event()

        async def app(scope: Any, receive: Any, send: Any) -> None:
            await release.wait()
            await answer_ok(scope, receive, send)

        protocol, transport = connect(HttpToolsProtocol, app)
        protocol.data_received(GET)
        protocol.cycle.keep_alive = False
        release.set()
        await settle()
        return transport

    transport = asyncio.run(scenario())
    assert b"connection: close" in transport.written and transport.closed, (
        f"{UVICORN}: cycle.keep_alive = False no longer closes the connection after the answer"
    )


def test_disconnected_ends_receive_and_silences_send() -> None:
    received: list[object] = []

    async def scenario() -> FakeTransport:
        async def app(scope: Any, receive: Any, send: Any) -> None:
            received.append(await receive())
            await answer_ok(scope, receive, send)

        protocol, transport = connect(HttpToolsProtocol, app)
        protocol.data_received(b"POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\n")
        await settle()
        protocol.cycle.disconnected = True
        protocol.cycle.message_event.set()
        await settle()
        return transport

    transport = asyncio.run(scenario())
    assert received == [{"type": "http.disconnect"}], (
        f"{UVICORN}: cycle.disconnected with message_event set no longer ends receive()"
    )
    assert transport.written == b"", f"{UVICORN}: send() writes after cycle.disconnected"


def test_the_keep_alive_timer_starts_after_an_answer_and_stops_on_data() -> None:
    async def scenario() -> None:
        protocol, _ = connect(HttpToolsProtocol)
        protocol.data_received(GET)
        await settle()
        timer = protocol.timeout_keep_alive_task
        assert timer is not None, f"{UVICORN}: no keep-alive timer after an answer"
        waits = timer.when() - protocol.loop.time()
        assert 0 < waits <= protocol.config.timeout_keep_alive
        protocol._unset_keepalive_if_required()
        assert timer.cancelled() and protocol.timeout_keep_alive_task is None, (
            f"{UVICORN}: _unset_keepalive_if_required no longer stops the keep-alive timer"
        )

    asyncio.run(scenario())


def test_an_error_raised_in_a_parser_callback_is_the_parse_errors_context() -> None:
    class Stop(Exception):
        pass

    class Callbacks:
        def on_header(self, name: bytes, value: bytes) -> None:
            raise Stop

    parser = httptools.HttpRequestParser(Callbacks())
    with pytest.raises(httptools.HttpParserError) as caught:
        parser.feed_data(GET)
    assert isinstance(caught.value.__context__, Stop), (
        f"httptools {httptools.__version__}: a callback's exception is no longer the parse "
        "error's __context__; the edge's 431 and door refusals would answer 400"
    )
