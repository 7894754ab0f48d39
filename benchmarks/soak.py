"""Soak: a bounded run of mixed valid and hostile traffic against one server.

    python -m benchmarks.soak [--duration 120] [--clients 16] [--seed 0] [--out DIR]

Starts the service on the demo model with its default settings, except 2 s upload and header
timeouts (``SETTINGS``) so that the slow kinds end within a short run. ``--clients`` workers each
keep one request in flight, drawing its kind by weight from ``benchmarks.hostile.probes``. The
server's resident memory (VmRSS of its process) is read at the start, every few seconds and at the
end, and /health/live last of all.

Exit 1 when a request was lost (sent, not abandoned by the client, and not answered, where a close
is not one of its kind's answers), when any answer was a 5xx, or when /health/live is not 200.
Unexpected statuses per kind are reported but do not fail the run: they are findings to read.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import uvloop

from benchmarks import hostile, stress
from benchmarks.images import photo_jpegs
from benchmarks.report import markdown_table
from benchmarks.servers.process import ServerProcess, exit_on_sigterm

SERVER_TIMEOUT_S = 2.0
SETTINGS = {"UPLOAD_TIMEOUT_S": str(SERVER_TIMEOUT_S), "HEADER_TIMEOUT_S": str(SERVER_TIMEOUT_S)}
ANSWER_SLACK_S = 10.0  # how much longer than the server's timeouts a raw probe waits for an answer
CLIENT_TIMEOUT_S = 60.0  # past the service's 30 s request deadline
RSS_EVERY_S = 3.0
LOG_LEVEL = re.compile(r"^\S+ \S+ (DEBUG|INFO|WARNING|ERROR|CRITICAL) ")


@dataclass
class Tally:
    """What one kind of traffic got: outcomes, and the latency of those that were answered."""

    outcomes: Counter[str] = field(default_factory=Counter)
    latencies_s: list[float] = field(default_factory=list)


async def _live(session: aiohttp.ClientSession, base: str) -> dict:
    async with session.get(base + "/health/live") as response:
        return {"status": response.status, "body": await response.text()}


async def soak(
    server: ServerProcess, probes: tuple[hostile.Probe, ...], args: argparse.Namespace
) -> dict:
    """Run the mix for ``args.duration`` seconds; tallies per kind, RSS samples, liveness."""
    tallies = {probe.name: Tally() for probe in probes}
    weights = [probe.weight for probe in probes]
    began = time.monotonic()
    rss: list[tuple[float, float | None]] = []

    def note_rss() -> None:
        rss.append((round(time.monotonic() - began, 1), stress.rss_mb(server.group)))

    async def sample_rss() -> None:
        while True:
            note_rss()
            await asyncio.sleep(RSS_EVERY_S)

    async def worker(target: hostile.Target, end: float) -> None:
        while time.monotonic() < end:
            probe = target.rng.choices(probes, weights)[0]
            started = time.perf_counter()
            outcome = await probe.send(target)
            tally = tallies[probe.name]
            tally.outcomes[outcome] += 1
            if outcome.isdigit():
                tally.latencies_s.append(time.perf_counter() - started)

    address = urlsplit(server.url)
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=args.clients),
        timeout=aiohttp.ClientTimeout(total=CLIENT_TIMEOUT_S),
        cookie_jar=aiohttp.DummyCookieJar(),
    ) as session:
        target = hostile.Target(
            session,
            address.hostname or "127.0.0.1",
            address.port or 80,
            SERVER_TIMEOUT_S,
            SERVER_TIMEOUT_S + ANSWER_SLACK_S,
            random.Random(args.seed),
        )
        sampler = asyncio.ensure_future(sample_rss())
        end = began + args.duration
        await asyncio.gather(*(worker(target, end) for _ in range(args.clients)))
        sampler.cancel()
        note_rss()
        live = await _live(session, server.url)
    return {"kinds": _kinds(probes, tallies), "rss_mb": rss, "live": live}


def _kinds(probes: tuple[hostile.Probe, ...], tallies: dict[str, Tally]) -> dict:
    kinds = {}
    for probe in probes:
        tally = tallies[probe.name]
        kinds[probe.name] = {
            "weight": probe.weight,
            "expected": sorted(probe.expected),
            "sent": sum(tally.outcomes.values()),
            "outcomes": dict(sorted(tally.outcomes.items())),
            "unexpected": {
                o: n for o, n in sorted(tally.outcomes.items()) if o not in probe.expected
            },
            "latency_ms": stress.percentiles_ms(tally.latencies_s),
        }
    return kinds


def totals(results: dict) -> dict:
    """Sent, answered, abandoned, lost and 5xx over every kind; RSS start, peak and end.

    A 5xx its kind expects (503 ``explain_busy`` for /explain: a bounded queue saying "later") is an
    answer, not a server error, and is not counted as 5xx.
    """
    counts = Counter[str]()
    for kind in results["kinds"].values():
        for outcome, n in kind["outcomes"].items():
            counts["sent"] += n
            if outcome.isdigit():
                counts["answered"] += n
                failed = outcome.startswith("5") and outcome not in kind["expected"]
                counts["5xx"] += n if failed else 0
            elif outcome == hostile.ABANDONED:
                counts["abandoned"] += n
            elif outcome == hostile.CLOSED and outcome in kind["expected"]:
                counts["closed as expected"] += n
            else:
                counts["lost"] += n
    memory = [mb for _, mb in results["rss_mb"] if mb is not None]
    rss = {"start": memory[0], "peak": max(memory), "end": memory[-1]} if memory else {}
    return {"counts": {k: counts[k] for k in TOTALS}, "rss": rss}


TOTALS = ("sent", "answered", "abandoned", "closed as expected", "lost", "5xx")


def log_levels(server: ServerProcess) -> dict[str, int]:
    """Server log lines by level (the service logs warnings and up in a soak)."""
    lines = server.log_path.read_text(errors="replace").splitlines()
    return dict(Counter(m[1] for m in map(LOG_LEVEL.match, lines) if m))


def checks(results: dict) -> list[stress.Check]:
    counts, live = results["totals"]["counts"], results["live"]
    return [
        stress.Check(
            "lost (not abandoned, no answer)", str(counts["lost"]), "0", not counts["lost"]
        ),
        stress.Check("5xx answers", str(counts["5xx"]), "0", not counts["5xx"]),
        stress.Check("/health/live at the end", str(live["status"]), "200", live["status"] == 200),
    ]


def markdown(results: dict) -> list[str]:
    rows = [
        [
            name,
            str(kind["sent"]),
            " or ".join(kind["expected"]),
            stress.listed(kind["outcomes"]),
            stress.listed(kind["unexpected"]),
            stress.ms(kind["latency_ms"]["p50"], kind["latency_ms"]["p99"]),
        ]
        for name, kind in results["kinds"].items()
    ]
    counts, rss, config = results["totals"]["counts"], results["totals"]["rss"], results["config"]
    memory = stress.ms(*(rss.get(k) for k in ("start", "peak", "end")))
    return [
        f"# Soak: {config['clients']} clients for {config['duration_s']:g} s, mixed traffic",
        "",
        f"Totals: {stress.listed(counts)}. Server RSS start / peak / end: {memory} MiB. "
        f"Server log lines by level: {stress.listed(results['log_levels'])}.",
        "",
        *markdown_table(
            ["kind", "sent", "expected", "outcomes", "unexpected", "p50 / p99 ms"], rows
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    exit_on_sigterm()
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.soak", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--duration", type=float, default=120.0, help="seconds (default 120)")
    parser.add_argument("--clients", type=int, default=16, help="default 16")
    parser.add_argument("--seed", type=int, default=0, help="of the traffic mix (default 0)")
    parser.add_argument("--out", type=Path, help="default runs/soak/<UTC time>")
    stress.add_service_env(parser)
    args = parser.parse_args(argv)
    settings = SETTINGS | dict(args.service_env)
    out = stress.run_folder("soak", args.out)
    results = {
        **stress.run_record("benchmarks.soak", argv),
        "config": {
            "clients": args.clients,
            "duration_s": args.duration,
            "seed": args.seed,
            "service_env": settings,
        },
    }
    # Every body is made before the server starts, so none is made while the clock runs.
    probes = hostile.probes(photo_jpegs(8), [hostile.png(seed) for seed in range(6)])
    server = stress.service_process("soak", settings, out / "logs")
    with server, asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        results |= runner.run(soak(server, probes, args))
    results["totals"] = totals(results)
    results["log_levels"] = log_levels(server)
    return stress.finish(out, results, markdown(results), checks(results), server)


if __name__ == "__main__":
    raise SystemExit(main())
