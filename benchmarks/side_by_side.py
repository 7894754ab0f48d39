"""Two models side by side on one server: what they share, and whether a busy one starves a quiet one.

    python -m benchmarks.side_by_side [--duration 20] [--clients 16] [--out DIR]

Starts ``resnet-serve serve`` on a repository of two copies of the demo model, ``a`` and ``b``
(``MODEL_REPOSITORY``; each its own runner and batcher, one admission gate and decode pool), and
runs three phases of ``--duration`` seconds, each client keeping one request in flight, one
photo-like JPEG per request to ``/predict?model=``:

1. ``one``: every client on ``a`` (``b`` idle): the server's capacity with one model busy;
2. ``split``: half the clients on ``a``, half on ``b``: the same load over two models;
3. ``quiet``: every client on ``a``, and one more client on ``b``: a model with a lone client beside
   a busy one.

Exit 1 when a request was not answered 200. The images/s of ``split`` beside ``one`` says what
two batchers cost over one; ``b``'s latency in ``quiet`` beside ``a``'s says whether a quiet
model waits behind a busy one.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp
import uvloop

from benchmarks import stress
from benchmarks.images import photo_jpegs
from benchmarks.report import markdown_table
from benchmarks.servers.process import ServerProcess, exit_on_sigterm

CLIENT_TIMEOUT_S = 60.0  # past the service's 30 s request deadline
PHASES = ("one", "split", "quiet")


def clients_of(phase: str, clients: int) -> dict[str, int]:
    """How many clients each model has in ``phase``."""
    if phase == "one":
        return {"a": clients}
    if phase == "split":
        return {"a": clients // 2, "b": clients - clients // 2}
    return {"a": clients, "b": 1}


async def run_phase(
    server: ServerProcess, images: list[bytes], phase: str, args: argparse.Namespace
) -> dict[str, dict]:
    """One phase: per model, its clients, answers by status, images/s and latency."""
    plan = clients_of(phase, args.clients)
    statuses: dict[str, Counter[str]] = {model: Counter() for model in plan}
    latencies: dict[str, list[float]] = {model: [] for model in plan}
    stop_at = time.monotonic() + args.duration

    async def client(session: aiohttp.ClientSession, model: str, seat: int) -> None:
        url = f"{server.url}/predict?model={model}"
        sent = seat
        while time.monotonic() < stop_at:
            form = aiohttp.FormData()
            form.add_field("file", images[sent % len(images)], filename="photo.jpg")
            answer = await stress.post(session, url, form)
            statuses[model][answer.outcome] += 1
            if answer.outcome == "200":
                latencies[model].append(answer.latency_s)
            sent += 1

    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=sum(plan.values())),
        timeout=aiohttp.ClientTimeout(total=CLIENT_TIMEOUT_S),
    ) as session:
        started = time.monotonic()
        await asyncio.gather(
            *(client(session, model, seat) for model, n in plan.items() for seat in range(n))
        )
        elapsed = time.monotonic() - started
    return {
        model: {
            "clients": plan[model],
            "statuses": dict(statuses[model]),
            "images_per_s": len(latencies[model]) / elapsed,
            **stress.percentiles_ms(latencies[model]),
        }
        for model in plan
    }


def markdown(results: dict) -> list[str]:
    rows = [
        [
            phase,
            model,
            str(point["clients"]),
            f"{point['images_per_s']:.1f}",
            stress.ms(point["p50"], point["p99"]),
            stress.listed(point["statuses"]),
        ]
        for phase in PHASES
        for model, point in results["phases"][phase].items()
    ]
    header = ["phase", "model", "clients", "img/s", "p50 / p99 ms", "answers"]
    machine = results["machine"]
    described = f"{machine['cpu']}, {machine['cores']} cores, {machine['gpu']}"
    return [f"Machine: {described}", "", *markdown_table(header, rows), ""]


def checks(results: dict) -> list[stress.Check]:
    failed = sum(
        count
        for phase in results["phases"].values()
        for point in phase.values()
        for status, count in point["statuses"].items()
        if status != "200"
    )
    one = sum(p["images_per_s"] for p in results["phases"]["one"].values())
    split = sum(p["images_per_s"] for p in results["phases"]["split"].values())
    return [
        stress.Check("answers other than 200", str(failed), "0", failed == 0),
        stress.Check(
            "split img/s over one model's",
            f"{split / one:.2f}" if one else "-",
            "reported",
            True,
        ),
    ]


def repository(folder: Path) -> Path:
    """Two copies of the demo bundle, ``a`` and ``b``: a repository of two models."""
    for name in ("a", "b"):
        shutil.copytree(stress.DEMO_MODEL, folder / name)
    return folder


def main(argv: list[str] | None = None) -> int:
    exit_on_sigterm()
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.side_by_side", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--duration", type=float, default=20.0, help="seconds a phase (default 20)")
    parser.add_argument("--clients", type=int, default=16, help="default 16")
    parser.add_argument("--out", type=Path, help="default runs/side-by-side/<UTC time>")
    stress.add_service_env(parser)
    args = parser.parse_args(argv)
    out = stress.run_folder("side-by-side", args.out)
    images = photo_jpegs(8)  # made before the server starts, never while the clock runs
    with tempfile.TemporaryDirectory() as scratch:
        settings = {"MODEL_REPOSITORY": str(repository(Path(scratch)))} | dict(args.service_env)
        results = {
            **stress.run_record("benchmarks.side_by_side", argv),
            "config": {"clients": args.clients, "duration_s": args.duration, "env": settings},
            "phases": {},
        }
        server = stress.service_process("side-by-side", settings, out / "logs")
        with server, asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            for phase in PHASES:
                results["phases"][phase] = runner.run(run_phase(server, images, phase, args))
        return stress.finish(out, results, markdown(results), checks(results), server)


if __name__ == "__main__":
    raise SystemExit(main())
