"""Clients that send a request and never read the answer, on raw sockets against a real server.

Without a write limit uvicorn waits on a full socket for as long as the client likes: each such
client holds a connection, its descriptors and the unsent answer. The large answer here is the
Swagger UI bundle (1.5 MB), served without a key or admission, asked for three times in one write:
more than the kernel's send buffer (at most 4 MB) can take, so the server's own buffers fill too.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.api.test_edge_limits import read_until_closed
from tests.conftest import ServerProcess, ready_server
from tests.waiting import wait_for

WRITE_TIMEOUT_S = 1.0
HEADER_TIMEOUT_S = 5.0  # long, so that a close well before it is not the header timer's
NON_READERS = 100
LARGE_ANSWER = b"GET /static/docs/swagger-ui-bundle.js HTTP/1.1\r\nHost: test\r\n\r\n" * 3
RECEIVE_BUFFER = 4096  # the client's window: the answer stays in the server's buffers
# The slow reader's pace, the behaviour under test: 32 KB every 30 ms takes the 1.5 MB answer
# longer than the write timeout to read, though it never stalls for that long.
READ_CHUNK, READ_PAUSE_S = 32768, 0.03


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from ready_server(
        tmp_path_factory.mktemp("readers"),
        max_batch_size=1,
        write_timeout_s=WRITE_TIMEOUT_S,
        header_timeout_s=HEADER_TIMEOUT_S,
    )


def _descriptors(server: ServerProcess) -> int:
    assert server.process is not None
    return len(os.listdir(f"/proc/{server.process.pid}/fd"))


def _resident_mb(server: ServerProcess) -> float:
    assert server.process is not None
    status = Path(f"/proc/{server.process.pid}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def _small_window_connection(server: ServerProcess) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)  # before connecting
    sock.settimeout(5)
    sock.connect(("127.0.0.1", server.port))
    return sock


def test_clients_that_never_read_are_cut_off_and_their_descriptors_freed(
    server: ServerProcess,
) -> None:
    server.get("/static/docs/swagger-ui-bundle.js")  # the file's first serving is not a leak
    descriptors, resident = _descriptors(server), _resident_mb(server)
    before = server.rejections()
    clients = [_small_window_connection(server) for _ in range(NON_READERS)]
    try:
        for client in clients:
            client.sendall(LARGE_ANSWER)
        wait_for(lambda: _descriptors(server) >= descriptors + NON_READERS, 5, "all connected")
        # Every connection is held while its answer waits, then cut at the write timeout: each
        # counted, and all of them dropped before a client lets go of its end.
        started = time.monotonic()

        def dropped() -> float:
            return server.rejections()["slow_reader"] - before["slow_reader"]

        wait_for(lambda: dropped() >= NON_READERS, WRITE_TIMEOUT_S + 5, "every reader dropped")
        seconds = time.monotonic() - started
        wait_for(lambda: _descriptors(server) <= descriptors + 2, 2, "descriptors back")
    finally:
        for client in clients:
            client.close()
    assert seconds < WRITE_TIMEOUT_S + 4
    after = server.rejections()
    assert after["slow_reader"] - before["slow_reader"] == NON_READERS
    assert after["internal"] == before["internal"]  # an abandoned answer is no server error
    assert _resident_mb(server) - resident < 30


def test_a_slow_reader_that_keeps_reading_gets_the_whole_answer(server: ServerProcess) -> None:
    path = "/static/docs/swagger-ui-bundle.js"
    expected = len(server.get(path).content)
    client = _small_window_connection(server)
    client.sendall(f"GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n".encode())
    received = b""
    started = time.monotonic()
    while chunk := client.recv(READ_CHUNK):  # far slower than the server writes
        received += chunk
        time.sleep(READ_PAUSE_S)
    client.close()
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert len(body) == expected
    assert time.monotonic() - started > WRITE_TIMEOUT_S  # it did take longer than the limit


def test_an_early_answer_to_a_client_waiting_for_100_continue_closes_at_once(
    server: ServerProcess,
) -> None:
    client = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    started = time.monotonic()
    client.sendall(
        b"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: image/jpeg\r\n"
        b"Expect: 100-continue\r\nContent-Length: 10000000000\r\n\r\n"
    )
    answer = read_until_closed(client, timeout_s=HEADER_TIMEOUT_S + 2)
    client.close()
    assert answer.startswith(b"HTTP/1.1 413")
    assert time.monotonic() - started < 1.0  # not the header timeout's 5 s
