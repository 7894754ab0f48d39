"""One system under test as a child process: started on a free port, awaited, and stopped.

Each server gets its own process group, so the harness can read the CPU time of everything it
spawned (LitServe's workers too) and stop all of it with one signal to that group.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import FrameType, TracebackType

READY_TIMEOUT_S = 300.0
STOP_TIMEOUT_S = 30.0
LOG_TAIL_CHARS = 3000


def exit_on_sigterm() -> None:
    """Turn SIGTERM into ``SystemExit``, so a ``with ServerProcess(...)`` block stops its server.

    Each server runs in a session of its own (so all of its processes can be stopped together),
    out of reach of a signal sent to the harness's process group: without this, a harness stopped
    by ``timeout`` would leave its server holding the port, the cores or the GPU.
    """

    def leave(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, leave)


class ServerStartError(RuntimeError):
    """The server exited, or never answered its readiness probe."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _answers_200(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


class ServerProcess:
    """``with ServerProcess(...) as server:`` runs ``command`` until the block ends."""

    def __init__(
        self, command: list[str], env: dict[str, str], port: int, ready_path: str, log_path: Path
    ) -> None:
        self.command = command
        self.env = env
        self.url = f"http://127.0.0.1:{port}"
        self.ready_path = ready_path
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def group(self) -> int:
        """The process group id (the leader's pid), for ``observe.group_cpu_seconds``."""
        if self._process is None:
            raise RuntimeError("server not started")
        return self._process.pid

    def __enter__(self) -> ServerProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                self.command,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise ServerStartError(
                    f"{self.command[0]} exited with {self._process.returncode}:\n{self.log_tail()}"
                )
            if _answers_200(self.url + self.ready_path):
                return
            time.sleep(0.2)
        raise ServerStartError(
            f"{self.url + self.ready_path} not ready in {READY_TIMEOUT_S:.0f}s:\n{self.log_tail()}"
        )

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-LOG_TAIL_CHARS:]

    def stop(self) -> None:
        """SIGTERM the whole group, then SIGKILL whatever is left after ``STOP_TIMEOUT_S``."""
        if self._process is None:
            return
        self._signal_group(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while self._group_alive() and time.monotonic() < deadline:
            self._process.poll()  # reap the leader, or its zombie keeps the group alive
            time.sleep(0.1)
        self._signal_group(signal.SIGKILL)
        self._process.wait()
        self._process = None

    def _signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._process.pid, sig)

    def _group_alive(self) -> bool:
        try:
            os.killpg(self._process.pid, 0)
        except ProcessLookupError:
            return False
        return True
