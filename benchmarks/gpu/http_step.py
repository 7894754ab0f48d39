"""``python -m benchmarks`` for the GPU check: the same harness and options, stopped cleanly by ``timeout``.

The harness starts each server in a session of its own so it can stop all of that server's
processes, which also puts the server out of reach of the signal ``timeout`` sends to its own process
group. Killed outright, the harness would leave the server holding the GPU for whatever runs next on
the machine. Here SIGTERM becomes ``SystemExit`` in the harness's main thread instead, so its ``with``
blocks stop the server and the load processes on the way out.

    python -m benchmarks.gpu.http_step --systems service,null --concurrency 1,64 --out /tmp/http
"""

from __future__ import annotations

import signal
import sys
from types import FrameType

from benchmarks.cli import main as harness


def _exit(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def main() -> int:
    signal.signal(signal.SIGTERM, _exit)
    return harness(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
