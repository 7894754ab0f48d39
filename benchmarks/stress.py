"""What the overload and soak runs share: the server, one timed POST, and a verdict on disk.

Both runs start ``resnet-serve serve`` on the demo model the way ``make bench`` does
(``benchmarks.systems.service``: the same environment rules, ``RESNET_SERVE_*`` of the caller
dropped) with settings of their own on top, and both end in a table of checks, any of which
failing makes the command exit 1 and print the tail of the server's log.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from benchmarks import machine
from benchmarks.report import markdown_table
from benchmarks.servers.process import ServerProcess, free_port
from benchmarks.systems import RunSettings, service

REPO = Path(__file__).resolve().parent.parent
DEMO_MODEL = REPO / "models" / "demo"
# Outcomes of a request that got no HTTP answer (the names ``benchmarks.loadgen`` counts them by).
TIMEOUT = "timeout"
CONN_ERROR = "conn_error"


@dataclass(frozen=True)
class Answer:
    """How one request ended: its HTTP status (or ``TIMEOUT`` / ``CONN_ERROR``) and when."""

    outcome: str
    latency_s: float
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Check:
    """One target of a run: what was measured, what it had to be, and whether it was."""

    name: str
    value: str
    target: str
    met: bool


def add_service_env(parser: argparse.ArgumentParser) -> None:
    """``--service-env KEY=VALUE`` (repeatable): a setting on top of the run's own, e.g.
    ``TORCH_THREADS=1`` on a busy CPU-only host (see ``make bench``'s option of the same name)."""

    def pair(text: str) -> tuple[str, str]:
        key, sep, value = text.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
        return key.strip(), value.strip()

    parser.add_argument(
        "--service-env",
        type=pair,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a RESNET_SERVE_* setting on top of the run's own (repeatable); leave the limits and "
        "timeouts the run sets alone: its targets and probes assume them",
    )


def service_process(name: str, overrides: dict[str, str], logs: Path) -> ServerProcess:
    """``resnet-serve serve`` on the demo model with ``overrides`` (``RESNET_SERVE_`` optional),
    on a free port, every core for torch; start it with ``with``."""
    run = RunSettings(DEMO_MODEL, machine.resolve_device("auto"), os.cpu_count() or 1)
    system = service(run, name, overrides)
    port = free_port()
    return ServerProcess(
        system.command(port),
        system.environment(port),
        port,
        system.ready_path,
        logs / f"{name}.log",
    )


async def post(
    session: aiohttp.ClientSession, url: str, data: Any, content_type: str | None = None
) -> Answer:
    """POST ``data`` and read the whole answer; transport failures become outcomes, not errors."""
    headers = {"Content-Type": content_type} if content_type else None
    started = time.perf_counter()
    try:
        async with session.post(url, data=data, headers=headers) as response:
            body = await response.read()
            return Answer(
                str(response.status), time.perf_counter() - started, body, response.headers
            )
    except TimeoutError:  # before ClientError: aiohttp's timeouts are both
        return Answer(TIMEOUT, time.perf_counter() - started)
    except aiohttp.ClientError:
        return Answer(CONN_ERROR, time.perf_counter() - started)


def error_code(body: bytes) -> str:
    """The ``error.code`` of the service's JSON error shape, or ``"?"`` for anything else."""
    try:
        return str(json.loads(body)["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return "?"


def rss_mb(pid: int) -> float | None:
    """Resident memory of process ``pid`` in MiB (``VmRSS``), None once it has gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def counter_total(base_url: str, name: str) -> float | None:
    """Counter ``name`` (without ``_total``) from the server's ``GET /metrics``."""
    with urllib.request.urlopen(base_url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        if family.name == name:
            return sum(sample.value for sample in family.samples if sample.name.endswith("_total"))
    return None


def percentiles_ms(latencies_s: Iterable[float]) -> dict[str, float | None]:
    """p50, p99 and max in milliseconds; None each when there is nothing to rank."""
    values = np.asarray(list(latencies_s)) * 1000.0
    if not values.size:
        return {"p50": None, "p99": None, "max": None}
    return {
        "p50": float(np.percentile(values, 50)),
        "p99": float(np.percentile(values, 99)),
        "max": float(values.max()),
    }


def ms(*values: float | None, sep: str = " / ") -> str:
    """Milliseconds (or MiB) for a table cell: one decimal, "-" for a missing value."""
    return sep.join("-" if value is None else f"{value:.1f}" for value in values)


def listed(counts: Mapping[str, int]) -> str:
    """``{"200": 5, "503": 2}`` -> ``"200: 5, 503: 2"`` ("-" when empty)."""
    return ", ".join(f"{key}: {n}" for key, n in counts.items()) or "-"


def run_folder(kind: str, out: Path | None) -> Path:
    """``out``, or ``runs/<kind>/<UTC time>`` in the repository."""
    return out or REPO / "runs" / kind / f"{datetime.now(UTC):%Y%m%d-%H%M%S}"


def run_record(module: str, argv: list[str] | None) -> dict[str, Any]:
    """When, with what command and on what machine a run was made (the head of results.json)."""
    args = sys.argv[1:] if argv is None else argv
    return {
        "started": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "command": shlex.join(["python", "-m", module, *args]),
        "machine": machine.describe(),
    }


def checks_table(checks: list[Check]) -> list[str]:
    rows = [[c.name, c.value, c.target, "yes" if c.met else "**NO**"] for c in checks]
    return markdown_table(["check", "measured", "target", "met"], rows)


def finish(
    out: Path,
    results: dict[str, Any],
    markdown: list[str],
    checks: list[Check],
    server: ServerProcess,
) -> int:
    """Write results.json and results.md into ``out``, print the tables; 1 if a check failed."""
    out.mkdir(parents=True, exist_ok=True)
    results["checks"] = [asdict(check) for check in checks]
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    text = "\n".join([*markdown, *checks_table(checks)])
    (out / "results.md").write_text(text + "\n")
    print(f"\n{text}\nwritten to {out}")
    if all(check.met for check in checks):
        return 0
    print(f"\nA target was missed. The server log ({server.log_path}) ends:\n")
    print(server.log_tail())
    return 1
