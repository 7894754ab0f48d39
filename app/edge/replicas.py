"""Several copies of the whole service on one listening socket: replicas per GPU.

One Python process tops out at a few thousand HTTP requests a second (parsing, multipart, JSON and
the event loop share one interpreter lock), far below what one GPU can classify. Each replica is a
complete server (its own model copy, batcher, decode threads and drain) in its own process; the
kernel spreads connections over them because they all accept on the socket bound here. This was
chosen over several HTTP processes feeding one batcher through shared memory: it needs no
cross-process queue, a crash takes one replica's requests instead of all of them, and a ResNet's
weights (tens of MB) cost little GPU memory per copy. A replica accepts connections only once it is
warmed up, so a slow starter never answers 503 while its siblings are ready.

The parent only forwards signals and watches: SIGTERM drains every replica as one server would; if
a replica dies on its own, the others are stopped and the parent exits with its status, so the
orchestrator restarts the whole unit rather than serving at reduced capacity unnoticed.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import TYPE_CHECKING

from app.settings import Settings

if TYPE_CHECKING:  # the parent process never imports torch
    from app.serving.builder import RunnerLoader

logger = logging.getLogger("resnet_serve")
POLL_S = 0.5


def bind(host: str, port: int) -> socket.socket:
    """The listening socket every replica accepts on."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _drain_when_orphaned() -> None:
    """A replica outliving its parent (killed with SIGKILL) would hold the port: drain and exit."""
    parent = multiprocessing.parent_process()
    if parent is not None:
        wait([parent.sentinel])
        os.kill(os.getpid(), signal.SIGTERM)


def _replica(settings: Settings, sock: socket.socket, load: RunnerLoader | None) -> None:
    from app.edge.server import serve  # the child imports torch; the parent never does

    threading.Thread(target=_drain_when_orphaned, name="orphan-watch", daemon=True).start()
    sys.exit(serve(settings, sock) if load is None else serve(settings, sock, load))


def _exit_code(process: BaseProcess) -> int:
    code = process.exitcode
    return 1 if code is None else (code if code >= 0 else 128 - code)


def _stopped_status(process: BaseProcess) -> int:
    """Exit status of a replica we asked to stop. One still loading its model when our SIGTERM
    came (uvicorn installs the draining handler only later) had taken no request: a clean stop."""
    return 0 if process.exitcode == -signal.SIGTERM else _exit_code(process)


def serve_replicas(settings: Settings, load: RunnerLoader | None = None) -> int:
    """Start ``settings.workers`` replicas, forward SIGTERM/SIGINT, return the exit status.

    ``load`` replaces ``app.serving.builder.load_runner`` in every replica; it must be importable by name.
    """
    sock = bind(settings.host, settings.port)
    context = multiprocessing.get_context("spawn")  # CUDA cannot be used in a forked child
    replicas = [
        context.Process(target=_replica, args=(settings, sock, load), name=f"replica-{i}")
        for i in range(settings.workers)
    ]
    stopping = False
    failure = 0

    def forward(sig: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for replica in replicas:
            if replica.pid is not None and replica.exitcode is None:
                os.kill(replica.pid, sig)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for replica in replicas:
            replica.start()
        logger.info("started %d replicas on %s:%d", len(replicas), settings.host, settings.port)
        running = list(replicas)
        while running:
            for ended in wait([r.sentinel for r in running], timeout=POLL_S):
                finished = next(r for r in running if r.sentinel == ended)
                finished.join()
                running.remove(finished)
                if not stopping:
                    failure = _exit_code(finished) or 1
                    logger.error("%s exited with %d; stopping the others", finished.name, failure)
                    forward(signal.SIGTERM, None)
        return failure or max(_stopped_status(replica) for replica in replicas)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()
