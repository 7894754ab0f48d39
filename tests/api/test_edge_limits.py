"""Slow and hostile HTTP clients on raw sockets against a real server: head size, count, time."""

from __future__ import annotations

import http.client
import json
import select
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.conftest import DEMO_BUNDLE, ServerProcess

HEADER_TIMEOUT_S = 1.0
KEEP_ALIVE_TIMEOUT_S = 0.5  # shorter than the header timeout, so a close at ~0.5 s is keep-alive's
MAX_HEADER_BYTES = 32768
MAX_HEADER_COUNT = 100
SLACK_S = 0.6
GET_LIVE = b"GET /health/live HTTP/1.1\r\nHost: test\r\n\r\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {
        "RESNET_SERVE_MODEL_DIR": str(DEMO_BUNDLE),
        "RESNET_SERVE_MAX_BATCH_SIZE": "1",  # warm-up of one batch size: ready in a moment
        "RESNET_SERVE_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S),
        "RESNET_SERVE_KEEP_ALIVE_TIMEOUT_S": str(KEEP_ALIVE_TIMEOUT_S),
        "RESNET_SERVE_MAX_HEADER_BYTES": str(MAX_HEADER_BYTES),
        "RESNET_SERVE_MAX_HEADER_COUNT": str(MAX_HEADER_COUNT),
    }
    process = ServerProcess(env, tmp_path_factory.mktemp("edge") / "server.log").start()
    try:
        yield process.wait_ready()
    finally:
        process.stop()


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def error_code(self) -> str:
        assert self.headers["content-type"] == "application/json"
        return json.loads(self.body)["error"]["code"]


def connect(server: ServerProcess) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=5)


def read_until_closed(sock: socket.socket, timeout_s: float = 5) -> bytes:
    """Everything the server sends until it closes; raises TimeoutError if it stays open."""
    deadline = time.monotonic() + timeout_s
    received = b""
    while True:
        sock.settimeout(max(deadline - time.monotonic(), 0.001))
        chunk = sock.recv(65536)
        if not chunk:
            return received
        received += chunk


def parse(raw: bytes) -> Answer:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines)
    return Answer(int(status_line.split()[1]), {k.lower(): v for k, v in headers.items()}, body)


def read_one(sock: socket.socket) -> http.client.HTTPResponse:
    """One response off a connection that stays open."""
    response = http.client.HTTPResponse(sock)
    response.begin()
    response.read()
    return response


def send_all_you_can(sock: socket.socket, data: bytes, chunk: int = 65536) -> None:
    """Send ``data`` in chunks, stopping quietly once the server has hung up."""
    try:
        for start in range(0, len(data), chunk):
            sock.sendall(data[start : start + chunk])
    except (BrokenPipeError, ConnectionResetError):
        pass


def head_of_size(size: int) -> bytes:
    """A GET /health/live whose request line and headers are exactly ``size`` bytes."""
    start, end = b"GET /health/live HTTP/1.1\r\nHost: test\r\nX-Pad: ", b"\r\n\r\n"
    return start + b"a" * (size - len(start) - len(end)) + end


def test_headers_at_the_byte_and_count_limits_are_served(server: ServerProcess) -> None:
    with connect(server) as sock:
        sock.sendall(head_of_size(MAX_HEADER_BYTES))
        assert read_one(sock).status == 200
        extra = b"".join(b"X-%d: 1\r\n" % n for n in range(MAX_HEADER_COUNT - 1))  # + Host
        sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: test\r\n" + extra + b"\r\n")
        assert read_one(sock).status == 200


def test_one_byte_over_the_head_limit_gets_431(server: ServerProcess) -> None:
    with connect(server) as sock:
        sock.sendall(head_of_size(MAX_HEADER_BYTES + 1))
        answer = parse(read_until_closed(sock))
    assert answer.status == 431
    assert answer.error_code() == "headers_too_large"


def test_huge_header_block_gets_431_at_once_and_other_clients_stay_served(
    server: ServerProcess,
) -> None:
    started = time.monotonic()
    with connect(server) as sock:
        send_all_you_can(sock, b"GET / HTTP/1.1\r\nHost: test\r\nX-Big: " + b"a" * 4_000_000)
        answer = parse(read_until_closed(sock, timeout_s=HEADER_TIMEOUT_S / 2))
    assert time.monotonic() - started < HEADER_TIMEOUT_S / 2  # the limit answered, not the timeout
    assert answer.status == 431
    assert answer.headers["connection"] == "close"
    assert answer.error_code() == "headers_too_large"
    assert str(MAX_HEADER_BYTES) in json.loads(answer.body)["error"]["message"]
    started = time.monotonic()
    with connect(server) as other:
        other.sendall(GET_LIVE)
        assert read_one(other).status == 200
    assert time.monotonic() - started < 0.5


def test_a_head_too_large_under_v2_gets_431_in_the_protocols_error_shape(
    server: ServerProcess,
) -> None:
    start = b"POST /v2/models/demo/infer HTTP/1.1\r\nHost: test\r\nX-Pad: "
    with connect(server) as sock:
        sock.sendall(start + b"a" * MAX_HEADER_BYTES)
        answer = parse(read_until_closed(sock))
    assert answer.status == 431
    assert json.loads(answer.body) == {"error": f"request head exceeds {MAX_HEADER_BYTES} bytes"}


def test_more_headers_than_the_limit_get_431_too_many_headers(server: ServerProcess) -> None:
    extra = b"".join(b"X-%d: 1\r\n" % n for n in range(MAX_HEADER_COUNT))  # + Host: one too many
    with connect(server) as sock:
        sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: test\r\n" + extra + b"\r\n")
        answer = parse(read_until_closed(sock))
    assert answer.status == 431
    assert answer.headers["connection"] == "close"
    assert answer.error_code() == "too_many_headers"


def dribble_until_answered(sock: socket.socket, data: bytes, interval_s: float) -> bytes:
    """Send ``data`` a byte per ``interval_s`` until the server answers; return what it sent."""
    for byte in data:
        sock.sendall(bytes([byte]))
        readable, _, _ = select.select([sock], [], [], interval_s)
        if readable:
            return read_until_closed(sock)
    pytest.fail("the server never answered a dribbling client")


def test_headers_dribbled_slower_than_the_timeout_get_408(server: ServerProcess) -> None:
    started = time.monotonic()
    with connect(server) as sock:
        answer = parse(dribble_until_answered(sock, GET_LIVE, interval_s=0.1))
    elapsed = time.monotonic() - started
    assert HEADER_TIMEOUT_S - 0.1 <= elapsed <= HEADER_TIMEOUT_S + SLACK_S
    assert answer.status == 408
    assert answer.headers["connection"] == "close"
    assert answer.error_code() == "header_timeout"


def test_next_request_on_keep_alive_connection_gets_its_own_header_timeout(
    server: ServerProcess,
) -> None:
    with connect(server) as sock:
        sock.sendall(GET_LIVE)
        assert read_one(sock).status == 200
        started = time.monotonic()  # the clock starts at the next request's first byte
        answer = parse(dribble_until_answered(sock, GET_LIVE, interval_s=0.1))
    elapsed = time.monotonic() - started
    assert HEADER_TIMEOUT_S - 0.1 <= elapsed <= HEADER_TIMEOUT_S + SLACK_S
    assert answer.status == 408
    assert answer.error_code() == "header_timeout"


def test_connection_that_sends_nothing_is_closed_without_an_answer(
    server: ServerProcess,
) -> None:
    started = time.monotonic()
    with connect(server) as sock:
        received = read_until_closed(sock, timeout_s=HEADER_TIMEOUT_S + SLACK_S)
    assert received == b""
    assert time.monotonic() - started >= HEADER_TIMEOUT_S - 0.1


def test_keep_alive_serves_two_requests_then_closes_when_idle(server: ServerProcess) -> None:
    with connect(server) as sock:
        for _ in range(2):
            sock.sendall(GET_LIVE)
            response = read_one(sock)
            assert response.status == 200
            assert response.getheader("connection") is None  # kept alive
        idle_from = time.monotonic()
        received = read_until_closed(sock, timeout_s=KEEP_ALIVE_TIMEOUT_S + SLACK_S)
    assert received == b""
    idle = time.monotonic() - idle_from
    assert KEEP_ALIVE_TIMEOUT_S - 0.1 <= idle < HEADER_TIMEOUT_S


def test_body_sent_with_the_head_does_not_count_toward_the_head_limit(
    server: ServerProcess,
) -> None:
    body = b"b" * (4 * MAX_HEADER_BYTES)
    post = b"POST /health/live HTTP/1.1\r\nHost: test\r\nContent-Length: %d\r\n\r\n" % len(body)
    with connect(server) as sock:
        sock.sendall(post + body)  # one write: head and body arrive in the same reads
        assert read_one(sock).status == 405  # the app answered: the edge let it through
        sock.sendall(GET_LIVE)  # the count starts again for the next request
        assert read_one(sock).status == 200


def test_pipelined_requests_in_one_write_are_each_answered(server: ServerProcess) -> None:
    with connect(server) as sock:
        sock.sendall(GET_LIVE * 3)
        received = read_until_closed(sock, timeout_s=KEEP_ALIVE_TIMEOUT_S + SLACK_S)
    assert received.count(b"HTTP/1.1 200 OK\r\n") == 3


@pytest.mark.parametrize(
    "request_bytes",
    [
        pytest.param(b"\x16\x03\x01 not http\r\n\r\n", id="tls-hello-garbage"),
        pytest.param(
            b"POST /health/live HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            id="bad-chunk-size",
        ),
    ],
)
def test_malformed_requests_get_400_bad_request_json(
    server: ServerProcess, request_bytes: bytes
) -> None:
    with connect(server) as sock:
        sock.sendall(request_bytes)
        answer = parse(read_until_closed(sock))
    assert answer.status == 400
    assert answer.headers["connection"] == "close"
    assert answer.error_code() == "bad_request"
    assert json.loads(answer.body)["error"]["message"] == "malformed HTTP request"


def test_errors_answered_at_the_edge_are_counted_by_reason(server: ServerProcess) -> None:
    before = server.rejections()
    with connect(server) as sock:
        sock.sendall(head_of_size(MAX_HEADER_BYTES + 1))
        assert parse(read_until_closed(sock)).status == 431
    with connect(server) as sock:
        sock.sendall(b"\x16\x03\x01 not http\r\n\r\n")
        assert parse(read_until_closed(sock)).status == 400
    with connect(server) as sock:
        sock.sendall(b"GET /health/live HTTP/1.1\r\n")
        assert parse(read_until_closed(sock)).status == 408
    after = server.rejections()
    assert {reason: after[reason] - before[reason] for reason in before} == {
        reason: 1.0 if reason in ("too_large", "bad_request", "deadline") else 0.0
        for reason in before
    }


def trickle_until_closed(sock: socket.socket, interval_s: float, limit_s: float) -> float:
    """Send a byte per ``interval_s`` until the server closes; the seconds that took."""
    started = time.monotonic()
    while time.monotonic() - started < limit_s:
        try:
            sock.sendall(b"x")
        except OSError:  # reset or broken pipe: closed
            return time.monotonic() - started
        readable, _, _ = select.select([sock], [], [], interval_s)
        if readable and not sock.recv(65536):
            return time.monotonic() - started
    pytest.fail(f"the connection was still open after {limit_s} s of trickling")


@pytest.mark.parametrize(
    "head",
    [
        b"POST /no-such-route HTTP/1.1\r\nHost: test\r\nContent-Length: 100000\r\n\r\n",
        b"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: image/jpeg\r\n"
        b"Content-Length: 10000000000\r\n\r\n",  # 413 from the declared length alone
    ],
    ids=["404", "413-declared-length"],
)
def test_a_body_trickled_after_an_early_answer_cannot_hold_the_connection(
    server: ServerProcess, head: bytes
) -> None:
    with connect(server) as sock:
        sock.sendall(head)
        assert read_one(sock).status in (404, 413)
        held_s = trickle_until_closed(sock, interval_s=0.1, limit_s=HEADER_TIMEOUT_S * 6)
    assert held_s <= HEADER_TIMEOUT_S * 2 + SLACK_S  # bounded, where it used to be held forever


def test_a_body_flooded_after_an_early_answer_is_cut_off(server: ServerProcess) -> None:
    head = (
        b"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: image/jpeg\r\n"
        b"Content-Length: 10000000000\r\n\r\n"
    )
    sent = 0
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 16)  # little in flight
        sock.settimeout(5)
        sock.connect(("127.0.0.1", server.port))
        sock.sendall(head)
        assert read_one(sock).status == 413
        with pytest.raises(OSError):  # reset or broken pipe once the server has had enough
            while sent < 200 * 2**20:
                sock.sendall(bytes(2**20))
                sent += 2**20
    # The body limit (10 MiB), plus what the server's receive buffer (autotuned up to the
    # kernel's maximum, 32 MiB here) held before the close: far short of the 200 MiB offered.
    assert sent <= 64 * 2**20


def test_a_connection_idle_after_an_early_answer_and_its_body_closes_quietly(
    server: ServerProcess,
) -> None:
    before = server.rejections()
    with connect(server) as sock:
        sock.sendall(b"POST /no-such-route HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n\r\n")
        assert read_one(sock).status == 404
        sock.sendall(b"hello")  # the body, after its answer; then nothing more
        started = time.monotonic()
        received = read_until_closed(sock, timeout_s=HEADER_TIMEOUT_S + SLACK_S)
        idle = time.monotonic() - started
    assert received == b""  # closed at the keep-alive limit, not answered 408
    assert KEEP_ALIVE_TIMEOUT_S - 0.1 <= idle < HEADER_TIMEOUT_S
    assert server.rejections() == before


def test_a_request_begun_in_the_read_that_ends_a_dropped_body_gets_the_header_timeout(
    server: ServerProcess,
) -> None:
    with connect(server) as sock:
        sock.sendall(b"POST /no-such-route HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n\r\n")
        assert read_one(sock).status == 404
        sock.sendall(b"hello" + GET_LIVE[:-2])  # the body's end, and the next head but its end
        time.sleep(KEEP_ALIVE_TIMEOUT_S + 0.25)  # past keep-alive, within the header timeout
        sock.sendall(GET_LIVE[-2:])
        assert read_one(sock).status == 200
