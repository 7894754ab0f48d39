"""Shared fixtures: real servers started as users start them, and images of known class."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import signal
import socket
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from fastapi import FastAPI
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from app.edge.application import create_app
from app.model.bundle import BundleManifest, save_bundle
from app.model.preprocessing import PreprocessingSpec
from app.model.resnet import ResNet, build_resnet
from app.serving.builder import build_service
from app.settings import Settings
from app.training.demo_data import CLASSES, render_image
from tests.waiting import wait_for

REPO = Path(__file__).resolve().parent.parent
DEMO_BUNDLE = REPO / "models" / "demo"
CLI = Path(sys.executable).with_name("resnet-serve")


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist two workers share the cores: each computes in-process (training,
    runners) on one torch thread, not one per core each, which oversubscribed them."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        torch.set_num_threads(1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ServerProcess:
    """A `resnet-serve serve` subprocess on 127.0.0.1 with its own port and log file."""

    env: dict[str, str]
    log_path: Path
    port: int = field(default_factory=free_port)
    command: list[str] = field(default_factory=lambda: [str(CLI), "serve"])
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def grpc_url(self) -> str:
        """``host:port`` of its gRPC endpoint (started with a ``grpc_port``)."""
        return f"127.0.0.1:{self.env['RESNET_SERVE_GRPC_PORT']}"

    def start(self) -> ServerProcess:
        env = {**os.environ, **self.env, "RESNET_SERVE_PORT": str(self.port)}
        env.setdefault("RESNET_SERVE_HOST", "127.0.0.1")
        # No gRPC unless asked for (a free port): dozens of servers would all want 8001.
        env.setdefault("RESNET_SERVE_GRPC_PORT", "0")
        self.log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            self.command, env=env, cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT
        )
        return self

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def get(self, path: str, **kwargs) -> httpx.Response:
        return httpx.get(self.url + path, timeout=10, **kwargs)

    def metrics(self) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
        """Every sample on /metrics: sample name -> sorted labels -> value."""
        response = self.get("/metrics")
        assert response.status_code == 200, response.text
        samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
        for family in text_string_to_metric_families(response.text):
            for sample in family.samples:
                labels = tuple(sorted(sample.labels.items()))
                samples.setdefault(sample.name, {})[labels] = sample.value
        return samples

    def rejections(self) -> dict[str, float]:
        """``resnet_serve_rejected_requests_total`` by reason."""
        counted = self.metrics()["resnet_serve_rejected_requests_total"]
        return {dict(labels)["reason"]: value for labels, value in counted.items()}

    def alive(self) -> bool:
        """True while the process runs; fails the test with the server log once it has exited."""
        if self.process.poll() is not None:
            pytest.fail(f"server exited with {self.process.returncode}:\n{self.logs()}")
        return True

    def wait_until(self, path: str, status: int, timeout_s: float = 120) -> None:
        """Poll ``path`` until it answers ``status``; fail with the server log otherwise. The
        deadline is a guard against a hang, not a bound on start-up: a warm-up on two cores shared
        with other test workers took over 60 s."""

        def answers() -> bool:
            try:
                return self.alive() and self.get(path).status_code == status
            except httpx.TransportError:
                return False

        wait_for(answers, timeout_s, f"{path} answering {status}", detail=self.logs)

    def wait_ready(self) -> ServerProcess:
        self.wait_until("/health/ready", 200)
        return self

    def terminate(self, timeout_s: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout_s)
        finally:
            self.log.close()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.log.close()


def server_env(settings: dict[str, object]) -> dict[str, str]:
    """``settings`` as RESNET_SERVE_* variables: the demo model unless ``model_dir`` says otherwise,
    batches of up to 8 unless ``max_batch_size`` does. Warm-up runs every batch size from 1
    up (36 images for 8, 528 for the service's default 32), and the suite starts dozens of servers:
    a test that needs larger batches asks for them."""
    env = {f"RESNET_SERVE_{k.upper()}": str(v) for k, v in settings.items()}
    env.setdefault("RESNET_SERVE_MODEL_DIR", str(DEMO_BUNDLE))
    env.setdefault("RESNET_SERVE_MAX_BATCH_SIZE", "8")
    return env


def ready_server(log_dir: Path, **settings: object) -> Iterator[ServerProcess]:
    """For a module's own server fixture: the demo model (unless ``model_dir`` says otherwise)
    served with ``settings`` (``header_timeout_s=5`` is RESNET_SERVE_HEADER_TIMEOUT_S), ready."""
    server = ServerProcess(server_env(settings), log_dir / "server.log").start()
    try:
        yield server.wait_ready()
    finally:
        server.stop()


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Factory: ``start_server(MODEL_DIR=..., MAX_BATCH_SIZE=...)`` starts a server (not waiting)."""
    servers: list[ServerProcess] = []

    def start(**settings: object) -> ServerProcess:
        server = ServerProcess(
            server_env(settings), tmp_path / f"server-{len(servers)}.log"
        ).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One demo-model server shared by the tests that do not change settings, with gRPC on
    ``grpc_url``."""
    log = tmp_path_factory.mktemp("demo-server") / "server.log"
    # Batches of up to 8: warm-up runs every size from 1 up (36 images, not 16's 136), and each
    # xdist worker starts its own.
    env = server_env({"grpc_port": free_port()})
    server = ServerProcess(env, log).start()
    try:
        yield server.wait_ready()
    finally:
        server.stop()


def write_bundle(
    directory: Path,
    labels: list[str],
    *,
    arch: str = "resnet18",
    input_size: int = 32,
    model: ResNet | None = None,
    weights_dtype: torch.dtype = torch.float32,
) -> Path:
    """Save ``model`` (random weights by default) as a bundle named after ``directory``."""
    manifest = BundleManifest(
        name=directory.name,
        arch=arch,
        num_classes=len(labels),
        labels=labels,
        preprocessing=PreprocessingSpec(input_size=input_size, resize_size=input_size),
    )
    model = model or build_resnet(arch, len(labels))
    return save_bundle(directory, model, manifest, weights_dtype=weights_dtype)


@pytest.fixture(scope="session")
def slow_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight ResNet-50 at 320 px: slow enough on CPU to hold a queue open for a while."""
    directory = tmp_path_factory.mktemp("slow-bundle") / "slow"
    return write_bundle(directory, ["a", "b"], arch="resnet50", input_size=320)


def encode(image: Image.Image, fmt: str = "JPEG", **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def known_image(class_name: str, seed: int) -> Image.Image:
    """A freshly drawn demo image of ``class_name`` the demo model has never seen."""
    return render_image(class_name, np.random.default_rng(10_000 + seed))


@pytest.fixture(scope="session")
def labelled_jpegs() -> list[tuple[str, bytes]]:
    """Two JPEGs per demo class, with their true label."""
    return [(name, encode(known_image(name, seed))) for seed, name in enumerate(CLASSES * 2)]


def png_claiming(width: int, height: int) -> bytes:
    """A few dozen bytes of PNG whose header claims ``width`` x ``height`` RGB pixels: what a
    decompression bomb looks like before it is decoded."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


@contextlib.contextmanager
def demo_app(**settings: object) -> Iterator[FastAPI]:
    """The app over the demo model, built in-process as ``serve`` builds it (no port, no warm-up),
    for tests that read its routes or documents; its threads are released afterwards."""
    service = build_service(Settings(model_dir=DEMO_BUNDLE, **settings))
    try:
        yield create_app(service)
    finally:
        asyncio.run(service.stop())
