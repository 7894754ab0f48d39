"""app.cli.healthcheck.probe against a tiny standard-library HTTP server on 127.0.0.1."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from app.cli.healthcheck import HEALTHY, UNHEALTHY, probe
from tests.deploy.manifests import healthcheck, read_dockerfile, venv_tool

RELEASE = threading.Event()  # holds the /hang handler until the test is over


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/hang":
            RELEASE.wait(10)
            return
        status = {"/ready": 200, "/starting": 503, "/missing": 404}[self.path]
        body = b'{"status": "..."}'
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
        pass


@pytest.fixture
def unused_port() -> int:
    """A port that was free a moment ago and has no listener."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        RELEASE.set()
        httpd.shutdown()
        httpd.server_close()


def test_ready_server_is_healthy_and_prints_nothing(
    server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert probe(f"{server}/ready") == HEALTHY == 0
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(("path", "status"), [("/starting", 503), ("/missing", 404)])
def test_any_status_but_200_is_unhealthy_with_one_line_naming_it(
    server: str, path: str, status: int, capsys: pytest.CaptureFixture[str]
) -> None:
    assert probe(f"{server}{path}") == UNHEALTHY == 1
    assert capsys.readouterr().err == f"unhealthy: {server}{path}: HTTP {status}\n"


def test_refused_connection_is_unhealthy(
    unused_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    port = unused_port
    assert probe(f"http://127.0.0.1:{port}/health/ready") == UNHEALTHY
    err = capsys.readouterr().err
    assert err.startswith(f"unhealthy: http://127.0.0.1:{port}/health/ready: ")
    assert "refused" in err.lower()
    assert err.count("\n") == 1


def test_server_that_does_not_answer_in_time_is_unhealthy(
    server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    assert probe(f"{server}/hang", timeout_s=0.2) == UNHEALTHY
    assert time.monotonic() - started < 2
    assert "timed out" in capsys.readouterr().err


def test_something_that_is_not_http_is_unhealthy(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]

        def answer_garbage() -> None:
            connection, _ = listener.accept()
            with connection:
                connection.recv(1024)
                connection.sendall(b"SSH-2.0-OpenSSH\r\n\r\n")

        thread = threading.Thread(target=answer_garbage, daemon=True)
        thread.start()
        assert probe(f"http://127.0.0.1:{port}/health/ready") == UNHEALTHY
        thread.join(5)
    assert capsys.readouterr().err.startswith("unhealthy: ")


def test_a_proxy_in_the_environment_is_not_used_for_the_probe(
    server: str, unused_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead_proxy = f"http://127.0.0.1:{unused_port}"
    monkeypatch.setenv("http_proxy", dead_proxy)
    monkeypatch.setenv("HTTP_PROXY", dead_proxy)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    assert probe(f"{server}/ready") == HEALTHY


def test_image_healthcheck_command_stays_light(unused_port: int) -> None:
    # Docker runs the HEALTHCHECK inside the serving container every 2-10 s, next to the model:
    # importing torch there would cost seconds of CPU and a GB of memory per probe.
    _, argv = healthcheck(read_dockerfile())
    command = [sys.executable, "-X", "importtime", str(venv_tool(argv[0])), *argv[1:]]
    env = {**os.environ, "RESNET_SERVE_PORT": str(unused_port)}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stderr[-2000:]
    imported = {line.split("|")[-1].strip().split(".")[0] for line in result.stderr.splitlines()}
    assert not imported & {"torch", "torchvision", "numpy", "PIL", "fastapi", "uvicorn"}
