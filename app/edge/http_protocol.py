"""The HTTP/1.1 edge: uvicorn's httptools protocol with limits on each request's head.

Why a protocol subclass and not an ASGI middleware: the app first hears of a request once its whole
head has been read and parsed, so a middleware can limit neither the head's size (by then the bytes
are in memory, and httptools gathers a long header with repeated ``bytes +=``: a 64 MB header block
costs seconds of event loop) nor the time a client takes to send it. Limits, per connection:

- ``max_header_bytes``: request line and headers, counted from the start of each request until its
  headers are complete. No byte beyond the limit reaches the parser; one more answers 431
  ``headers_too_large``.
- ``max_header_count``: one header more answers 431 ``too_many_headers``.
- ``header_timeout_s``: from the connection's opening, or from the first byte of a keep-alive
  connection's next request, until its headers are complete; then 408 ``header_timeout``. A
  connection that never sent a byte is closed without an answer: there is no request to answer, and
  a client that raced its first request against the timeout would read a 408 as that request's
  answer. Idle time between requests stays uvicorn's ``timeout_keep_alive``.
- A malformed request answers 400 ``bad_request`` (uvicorn answers plain text naming no cause).
- A request answered before its body was read (refused at the door, or a 401, 404 or 413 from
  the app) has its body read and dropped: it must end within ``header_timeout_s`` and
  ``max_body_bytes``, or the connection is closed. One that waits for ``100 Continue`` will never
  send that body: its connection is closed once the answer is out.
- ``write_timeout_s``: a response whose unsent bytes make no progress for that long (the client
  stopped reading) is abandoned and the connection aborted, whatever the route, static files and
  docs included. Without it uvicorn waits on a full socket without end, and its keep-alive timer
  starts only after a complete response: one request and no reads held a connection, two
  descriptors and about 90 KB for as long as the client liked. Progress is counted whenever the
  transport's buffer shrinks, so a slow reader that keeps reading gets the whole answer. The
  kernel's send buffer (up to 4 MB) is held to the same limit with ``TCP_USER_TIMEOUT`` (Linux):
  a peer whose receive window stays shut that long is dropped by the kernel, also after the
  server has closed its side, where the unsent bytes would otherwise stay in kernel memory.

Trade-offs:

- An error answer half-closes the connection and discards what the client still sends, up to
  ``LINGER_S`` and ``LINGER_BYTES``: closing at once with unread bytes makes the kernel send a
  reset, and a client still writing its oversized head would see "connection reset", not the 431.
  The caps keep a client that never stops sending from costing more than a large request would.
- The byte count is exact for a head that begins a read. A pipelined head that begins inside one,
  right after the previous request, is counted only from the end of that parser call, so it may
  overshoot by up to one read (at most 256 KiB), which the parser takes in one pass.
- When a pipelined request breaks a limit while the previous response is still owed, that response
  is finished and the connection then closed, rather than an error interleaved with it.
- httptools only (uvicorn's default with ``uvicorn[standard]``); h11 keeps its own behaviour.

Nor a uvicorn setting: ``timeout_keep_alive`` times only the idle gap between requests (used as
is), ``limit_concurrency`` answers plain-text 503s by connection and task count, and
``h11_max_incomplete_event_size`` bounds a head only under h11 (a plain-text 400; no count or time
limit). What the subclass takes from uvicorn beyond asyncio's and httptools' callbacks, each pinned
in tests/unit/test_uvicorn_contract.py: ``data_received`` repeated, not extended (uvicorn feeds a
read whole and answers any parse error in plain text), with its calls of
``_unset_keepalive_if_required``, ``_should_upgrade`` and ``_unsupported_upgrade_warning``;
``_start_asgi_task``, overridden to know which request is being answered (uvicorn keeps no
reference once another is parsed behind it); and the request state on the protocol and its cycle.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from asyncio import TimerHandle
from collections.abc import Callable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import unquote_to_bytes

import httptools
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.server import ServerState

from app.edge.http_errors import ApiError, error_response
from app.settings import Settings

if TYPE_CHECKING:
    from uvicorn._types import ASGI3Application

# How long, and how much, a connection answered with an error may still send before it is closed.
LINGER_S = 1.0
LINGER_BYTES = 1 << 20

# uvicorn's own protocol logger, so that these lines sit with its connection messages.
logger = logging.getLogger("uvicorn.error")


class TooManyHeadersError(Exception):
    """Raised from the parser's header callback to stop parsing a request with too many headers."""


class RefusedAtDoorError(Exception):
    """Raised from the parser's headers-complete callback to stop parsing a refused request."""

    def __init__(self, error: ApiError) -> None:
        super().__init__(error.message)
        self.error = error


Door = Callable[[bytes, bytes, list[tuple[bytes, bytes]]], ApiError | None]
"""Asked with a request's method, raw target and headers once they are in: an error answers it at
once. The door reads only what it needs (a GET costs it one comparison)."""

RejectionCounter = Callable[[str], None]
"""Told the code of each error this layer answers itself (431, 408, 400), for the metrics, and
``write_timeout`` for each connection abandoned because its client stopped reading."""


def edge_protocol(
    settings: Settings, door: Door | None = None, count_rejection: RejectionCounter | None = None
) -> type[EdgeHttpProtocol]:
    """The protocol class to give ``uvicorn.Config(http=...)``, bound to ``settings``' limits, to
    ``door``, the app's early admission check, and to ``count_rejection``, which counts the errors
    answered here (the door counts its own refusals).

    uvicorn builds one protocol per connection with a fixed signature, so they travel as class
    attributes of a subclass made here.
    """
    attributes: dict[str, object] = {"settings": settings}
    if door is not None:
        attributes["door"] = staticmethod(door)
    if count_rejection is not None:
        attributes["count_rejection"] = staticmethod(count_rejection)
    return type("EdgeHttpProtocol", (EdgeHttpProtocol,), attributes)


def request_path(target: bytes) -> bytes:
    """The path the app will route ``target`` to, as uvicorn derives it: an absolute-form target
    (``http://host/predict``) gives its path, and percent-escapes are decoded (``/%70redict``).
    A target that is no URL at all gives ``b""``."""
    try:
        path = httptools.parse_url(target).path or b""
    except httptools.HttpParserInvalidURLError:
        return b""
    return unquote_to_bytes(path) if b"%" in path else path


def render_error(
    error: ApiError, default_headers: list[tuple[bytes, bytes]], path: str, close: bool = True
) -> bytes:
    """A whole response in the app's JSON error shape for ``path`` (the request's, if it got that
    far), as bytes to write."""
    response = error_response(error, path)
    headers = [*default_headers, *response.raw_headers]
    if close:
        headers.append((b"connection", b"close"))
    status = HTTPStatus(error.status)
    lines = [
        f"HTTP/1.1 {status.value} {status.phrase}\r\n".encode("latin-1"),
        *(name + b": " + value + b"\r\n" for name, value in headers),
    ]
    return b"".join([*lines, b"\r\n", response.body])


class EdgeHttpProtocol(HttpToolsProtocol):
    """One client connection, held to the head limits of ``settings`` (see the module docstring)."""

    settings: ClassVar[Settings]

    @staticmethod
    def door(method: bytes, target: bytes, headers: list[tuple[bytes, bytes]]) -> ApiError | None:
        """Without a door (``edge_protocol`` gives the app's) every request goes on to the app."""
        return None

    @staticmethod
    def count_rejection(code: str) -> None:
        """Without a counter (``edge_protocol`` gives the metrics') nothing is counted."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.keep_alive_s = config.timeout_keep_alive
        self.in_head = True  # between the end of a request (or the connection's start) and headers
        self.head_bytes = 0
        self.header_timer: TimerHandle | None = None
        self.linger_timer: TimerHandle | None = None
        self.rejected = False  # answered with an error: the parser sees nothing more
        self.discarded_bytes = 0
        self.discarding: int | None = None  # body bytes of a request refused at the door
        self.idle_timer: TimerHandle | None = None  # after a dropped body, as uvicorn's keep-alive
        self.write_timer: TimerHandle | None = None
        self.writes_paused = False  # the transport's buffer is above its high-water mark
        self.writes_resumed = 0  # times the transport's buffer drained below its low-water mark
        self.body_bytes = 0  # of the current request, as they arrive
        # The request being answered. Not always ``cycle``: that is the last one parsed, perhaps
        # pipelined behind this one.
        self.answering: RequestResponseCycle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # uvicorn's own signature, narrower than asyncio's BaseTransport
        super().connection_made(transport)
        self._arm_header_timer()
        sock = transport.get_extra_info("socket")
        if sock is not None and hasattr(socket, "TCP_USER_TIMEOUT"):
            milliseconds = int(self.settings.write_timeout_s * 1000)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, milliseconds)

    def connection_lost(self, exc: Exception | None) -> None:
        if isinstance(exc, TimeoutError):  # ETIMEDOUT: the kernel's TCP_USER_TIMEOUT ran out
            self._count_write_timeout()
        answering = self.answering
        if answering is not None and not answering.response_complete:
            # uvicorn marks only the last parsed request disconnected; the one being answered,
            # resumed from a full buffer, would write to the closed transport and fail with 500.
            answering.disconnected = True
        self._cancel_header_timer()
        for timer in (self.linger_timer, self.write_timer, self.idle_timer):
            if timer is not None:
                timer.cancel()
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        super().pause_writing()
        self.writes_paused = True
        self._watch_writes()

    def resume_writing(self) -> None:
        super().resume_writing()
        self.writes_paused = False
        self.writes_resumed += 1

    def data_received(self, data: bytes) -> None:
        if self.rejected:
            self.discarded_bytes += len(data)
            if self.discarded_bytes > LINGER_BYTES:
                self.transport.close()
            return
        # uvicorn's data_received repeated (its keep-alive timer stopped here, the parser fed and an
        # upgrade handed on in _feed): it feeds a read whole and answers any parse error in plain
        # text, and no hook changes either.
        self._unset_keepalive_if_required()
        self._cancel_idle_timer()
        view = memoryview(data)
        while view:
            if not self.in_head:
                # A body; a pipelined head that starts inside it is counted from the next read.
                self._feed(view)
                return
            room = self.settings.max_header_bytes - self.head_bytes
            if room == 0:
                limit = self.settings.max_header_bytes
                self._reject(
                    ApiError(431, "headers_too_large", f"request head exceeds {limit} bytes")
                )
                return
            self._arm_header_timer()
            piece, view = view[:room], view[room:]
            self.head_bytes += len(piece)
            if not self._feed(piece):
                return

    def _feed(self, data: memoryview) -> bool:
        """Parse ``data``; False when parsing has stopped (an error answered, or an upgrade)."""
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return False
        except httptools.HttpParserError as exc:
            cause = exc.__context__
            if isinstance(cause, RefusedAtDoorError):
                self._reject(cause.error, from_door=True)
            elif isinstance(cause, TooManyHeadersError):
                count = self.settings.max_header_count
                self._reject(
                    ApiError(431, "too_many_headers", f"more than {count} request headers")
                )
            else:
                self._reject(ApiError(400, "bad_request", "malformed HTTP request"))
            return False
        return True

    # uvicorn's one place that starts a request's app, pipelined ones included; no public hook says
    # which request is being answered.
    def _start_asgi_task(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
        self.answering = cycle
        super()._start_asgi_task(cycle, app)

    # Parser callbacks
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.body_bytes = 0
        self._cancel_idle_timer()  # a request has begun in the read that ended a dropped body
        self._arm_header_timer()  # a pipelined request that began inside a read

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(self.headers) >= self.settings.max_header_count:
            raise TooManyHeadersError
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self.in_head = False
        self._cancel_header_timer()
        refused = self.door(self.parser.get_method(), self.url, self.headers)
        if refused is not None:
            self._refuse_at_door(refused)
            return
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self.body_bytes += len(body)
        if self.discarding is None:
            super().on_body(body)
            return
        self.discarding += len(body)
        if self.discarding > self.settings.max_body_bytes:
            self.transport.close()

    def on_message_complete(self) -> None:
        self.in_head = True
        self.head_bytes = 0
        if self.discarding is None:
            super().on_message_complete()
            return
        self.discarding = None
        self._cancel_header_timer()  # the body's time is up; the next request has its own
        # Idle until the next request under the keep-alive limit, as uvicorn does after any answer
        # (each byte of the dropped body had stopped its timer). Not the header timer: a client that
        # sends nothing more is closed quietly, not answered 408 for a request it never began.
        self.idle_timer = self.loop.call_later(self.keep_alive_s, self.transport.close)

    def on_response_complete(self) -> None:
        cycle = self.cycle
        if cycle is not None and cycle.response_complete and cycle.more_body:
            if self.expect_100_continue and not self.body_bytes:
                # Answered before anything of its body came: nothing more will (the client waits
                # for a 100 Continue that an answer replaces).
                self._close_after_answer()
                return
            # Answered before its body was read (401, 404, 413, ...): the rest of the body is read
            # and dropped like a refused request's, within the same time and size, not waited for
            # without end (uvicorn stops its keep-alive timer on every byte that arrives).
            self._discard_body()
        super().on_response_complete()
        if self.transport.get_write_buffer_size():
            # Complete but not yet sent: closing at the keep-alive limit would wait for the
            # buffer to flush, as long as the client likes.
            self._watch_writes()

    def _discard_body(self) -> None:
        """Drop the current request's remaining body; a stall or an excess ends the connection."""
        self.discarding = 0
        self._arm_header_timer()

    def _refuse_at_door(self, error: ApiError) -> None:
        """Answer a refused request before uvicorn builds it for the app, then discard its body.

        The connection stays open for the client's next request: a refusal that cost a reconnect
        would cost both sides more than the refusal itself. A client that waits for
        ``100 Continue`` never sends the body, so its connection is closed instead.
        """
        if self.cycle is not None and not self.cycle.response_complete:
            raise RefusedAtDoorError(error)  # pipelined behind an answer still owed
        waits_for_continue = any(name == b"expect" for name, _ in self.headers)
        if waits_for_continue or not self.parser.should_keep_alive():
            raise RefusedAtDoorError(error)
        headers = self.server_state.default_headers
        self.transport.write(render_error(error, headers, self._path(), close=False))
        self._discard_body()

    def _path(self) -> str:
        """The path of the request being answered, as far as the parser has read it: it chooses
        the error's shape (the Open Inference Protocol's under /v2)."""
        return request_path(getattr(self, "url", b"")).decode("latin-1")

    # Limits
    def _arm_header_timer(self) -> None:
        if self.header_timer is None:
            timeout = self.settings.header_timeout_s
            self.header_timer = self.loop.call_later(timeout, self._header_timed_out)

    def _cancel_header_timer(self) -> None:
        if self.header_timer is not None:
            self.header_timer.cancel()
            self.header_timer = None

    def _cancel_idle_timer(self) -> None:
        if self.idle_timer is not None:
            self.idle_timer.cancel()
            self.idle_timer = None

    def _header_timed_out(self) -> None:
        self.header_timer = None
        if self.discarding is not None:
            self.transport.close()  # the refused request's body stalled; it has had its answer
            return
        if self.cycle is None and self.head_bytes == 0:
            self.transport.close()  # a connection that never sent a byte: nothing to answer
            return
        timeout = self.settings.header_timeout_s
        message = f"request headers not received within {timeout:g} s"
        self._reject(ApiError(408, "header_timeout", message))

    def _reject(self, error: ApiError, from_door: bool = False) -> None:
        """Answer ``error`` in the JSON shape and close; an answer already owed goes out first.

        A refusal ``from_door`` is neither logged nor counted here: the door counts it, and a flood
        of them must not turn the log into a second attack.
        """
        self.rejected = True
        self._cancel_header_timer()
        if not from_door:
            logger.warning("rejected a request from %s: %s", self.client, error.message)
            self.count_rejection(error.code)
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            if cycle.response_started or not cycle.more_body:
                cycle.keep_alive = False  # the earlier request's answer first, then close
                return
            # Its body can no longer arrive: the app sees a disconnect, the client our answer.
            cycle.disconnected = True
            cycle.message_event.set()
        self.transport.write(render_error(error, self.server_state.default_headers, self._path()))
        self._close_after_answer()

    def _close_after_answer(self) -> None:
        """Half-close once the answer is out, discard what the client still sends, then close."""
        self.rejected = True
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.linger_timer = self.loop.call_later(LINGER_S, self.transport.close)
        self._watch_writes()  # close() waits for the answer to flush: no longer than this

    def _watch_writes(self) -> None:
        """Abort the connection if its unsent bytes make no progress within ``write_timeout_s``."""
        if self.write_timer is None:
            self.write_timer = self.loop.call_later(
                self.settings.write_timeout_s,
                self._check_writes,
                self.transport.get_write_buffer_size(),
                self.writes_resumed,
            )

    def _check_writes(self, buffered_then: int, resumed_then: int) -> None:
        self.write_timer = None
        buffered = self.transport.get_write_buffer_size()
        if not buffered and not self.writes_paused:
            return  # all sent
        if buffered < buffered_then or self.writes_resumed != resumed_then:
            self._watch_writes()  # a slow reader, but a reader
            return
        self.transport.abort()
        self._count_write_timeout()

    def _count_write_timeout(self) -> None:
        logger.warning(
            "dropped the connection of %s: its answer went unread for %g s",
            self.client,
            self.settings.write_timeout_s,
        )
        self.count_rejection("write_timeout")
