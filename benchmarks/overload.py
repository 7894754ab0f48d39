"""Overload: ten times more clients than the service admits, and how it turns the rest away.

    python -m benchmarks.overload [--clients 320] [--duration 20] [--out DIR]

Starts the service on the demo model with a small admission bound (``SETTINGS``: 32 requests,
32 images, batches of 16), measures its capacity (16 clients for 5 s, ``benchmarks.loadgen``) and
the latency of a lone request when idle. Then ``--clients`` closed-loop clients (aiohttp, one
connection each, a real JPEG per request, no back-off: the worst a retry storm can do) flood
/predict for ``--duration`` seconds. Right after the last answer it reads /health's saturation
and times a lone request (then a few more, one after another).

Targets (exit 1 when one is missed): the flood reached the bound (some 503 ``overloaded``); no
request lost (transport error or client timeout); every other answer a 200, so every admitted
request was classified (no 5xx, no 504); refusals fast (503 p99 under 50 ms); and recovery at
once: saturation 0, and a lone request within twice its idle latency (or 20 ms of it).

Clients that do not back off are always waiting, so by Little's law a 503's mean latency is
clients / answers-per-second: the 503 target holds only while the server answers (mostly refuses)
more than ``clients / 0.05 s`` requests per second. The table reports answers/s for that reason.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import uvloop

from benchmarks import observe, stress
from benchmarks.bodies import EncodedBody, encode
from benchmarks.images import photo_jpegs
from benchmarks.loadgen import LoadPlan, run_plan
from benchmarks.report import markdown_table
from benchmarks.servers.process import ServerProcess, exit_on_sigterm

BOUND = 32
SETTINGS = {
    "MAX_QUEUE_SIZE": str(BOUND),
    "MAX_REQUESTS_IN_FLIGHT": str(BOUND),
    "MAX_BATCH_SIZE": "16",
    "MAX_IMAGES_PER_REQUEST": "16",  # the queue must hold one largest request
}
CAPACITY_CLIENTS, CAPACITY_S = 16, 5.0
IDLE_SAMPLES = 5
CLIENT_TIMEOUT_S = 60.0  # past the service's 30 s deadline: a timeout here is a lost request
TARGET_REFUSAL_P99_MS = 50.0
RECOVERY_FACTOR, RECOVERY_SLACK_MS = 2.0, 20.0
REFUSED = "resnet_serve_admission_refused"  # app/serving/metrics.py
PERCENTILES = ("p50", "p99", "max")  # the keys of stress.percentiles_ms


@dataclass
class Flood:
    """Every request of the flood: outcomes, latencies by outcome, error codes, retry hints."""

    outcomes: Counter[str] = field(default_factory=Counter)
    latencies_s: defaultdict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    codes: Counter[str] = field(default_factory=Counter)  # error.code of every non-200 answer
    retry_after_s: list[float] = field(default_factory=list)

    def note(self, answer: stress.Answer) -> None:
        self.outcomes[answer.outcome] += 1
        self.latencies_s[answer.outcome].append(answer.latency_s)
        if answer.outcome.isdigit() and answer.outcome != "200":
            self.codes[f"{answer.outcome} {stress.error_code(answer.body)}"] += 1
        if "Retry-After-Ms" in answer.headers:
            self.retry_after_s.append(float(answer.headers["Retry-After-Ms"]) / 1000)

    @property
    def lost(self) -> int:
        return self.outcomes[stress.TIMEOUT] + self.outcomes[stress.CONN_ERROR]


async def flood(url: str, bodies: list[EncodedBody], clients: int, duration_s: float) -> Flood:
    """``clients`` closed loops until ``duration_s`` has passed; the last answers are awaited."""
    result = Flood()
    end = time.monotonic() + duration_s
    connector = aiohttp.TCPConnector(limit=clients)
    timeout = aiohttp.ClientTimeout(total=CLIENT_TIMEOUT_S)

    async def client(session: aiohttp.ClientSession, turn: int) -> None:
        while time.monotonic() < end:
            body = bodies[turn % len(bodies)]
            turn += 1
            result.note(await stress.post(session, url, body.data, body.content_type))

    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, cookie_jar=aiohttp.DummyCookieJar()
    ) as session:
        await asyncio.gather(*(client(session, i) for i in range(clients)))
    return result


async def _lone(session: aiohttp.ClientSession, url: str, body: EncodedBody) -> float | None:
    """Milliseconds of one request on a quiet server; None unless it was a 200."""
    answer = await stress.post(session, url, body.data, body.content_type)
    return answer.latency_s * 1000 if answer.outcome == "200" else None


async def _saturation(session: aiohttp.ClientSession, base: str) -> float | None:
    async with session.get(base + "/health") as response:
        return (await response.json()).get("saturation")


async def measure(base: str, bodies: list[EncodedBody], args: argparse.Namespace) -> dict:
    """Idle latency, the flood, then saturation and a lone request right after it."""
    url = base + "/predict"
    # A fresh connection per probe, as a new client after the flood would have.
    probe = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))
    async with probe:
        idle = [await _lone(probe, url, bodies[i]) for i in range(IDLE_SAMPLES)]
        client_cpu = time.process_time()
        result = await flood(url, bodies, args.clients, args.duration)
        client_cpu = time.process_time() - client_cpu
        saturation = await _saturation(probe, base)
        # The first is the check; the rest tell a slow recovery from a one-off stall.
        after = [await _lone(probe, url, bodies[i]) for i in range(IDLE_SAMPLES)]
    known = [value for value in idle if value is not None]
    return {
        "idle_ms": statistics.median(known) if known else None,
        "sent": sum(result.outcomes.values()),
        "outcomes": dict(sorted(result.outcomes.items())),
        "lost": result.lost,
        "codes": dict(sorted(result.codes.items())),
        "latency_ms": {o: stress.percentiles_ms(s) for o, s in result.latencies_s.items()},
        "retry_after_ms": stress.percentiles_ms(result.retry_after_s),
        "ok_images_per_s": result.outcomes["200"] / args.duration,
        "client_cpu_s": client_cpu,
        "idle_samples_ms": idle,
        "recovery": {"saturation": saturation, "lone_ms": after[0], "then_ms": after[1:]},
    }


def _refused(server: ServerProcess) -> float | None:
    return stress.counter_total(server.url, REFUSED)


def _since(before: float | None, after: float | None) -> float | None:
    return None if before is None or after is None else after - before


def run(server: ServerProcess, args: argparse.Namespace) -> dict:
    """Capacity, then the flood and recovery, with the server's CPU and refusal count around it."""
    bodies = encode(photo_jpegs(), "multipart")
    plan = LoadPlan(
        server.url,
        tuple(bodies),
        CAPACITY_CLIENTS,
        warmup_s=1.0,
        duration_s=CAPACITY_S,
        start_at=time.monotonic() + 0.3,
    )
    capacity = run_plan(plan).summary()
    cpu, refused = observe.group_cpu_seconds(server.group), _refused(server)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        measured = runner.run(measure(server.url, bodies, args))
    cpu = _since(cpu, observe.group_cpu_seconds(server.group))
    refused = _since(refused, _refused(server))
    return {"capacity": capacity, **measured, "server_cpu_s": cpu, "refused_counter": refused}


def checks(results: dict) -> list[stress.Check]:
    """The targets of the module docstring, against ``results``."""
    refused = results["codes"].get("503 overloaded", 0)
    answered = results["sent"] - results["lost"]
    others = answered - results["outcomes"].get("200", 0) - refused
    refusal_p99 = results["latency_ms"].get("503", {}).get("p99")
    recovery = results["recovery"]
    idle, lone = results["idle_ms"], recovery["lone_ms"]
    lone_limit = max(RECOVERY_FACTOR * idle, idle + RECOVERY_SLACK_MS) if idle else None
    return [
        stress.Check("flood reached the bound", f"{refused} refused", "> 0", refused > 0),
        stress.Check(
            "lost (transport error, timeout)", str(results["lost"]), "0", not results["lost"]
        ),
        stress.Check("answers other than 200 or 503 overloaded", str(others), "0", not others),
        stress.Check(
            "503 latency p99",
            f"{stress.ms(refusal_p99)} ms",
            f"< {TARGET_REFUSAL_P99_MS:.0f} ms",
            refusal_p99 is not None and refusal_p99 < TARGET_REFUSAL_P99_MS,
        ),
        stress.Check(
            "/health saturation right after",
            str(recovery["saturation"]),
            "0",
            recovery["saturation"] == 0,
        ),
        stress.Check(
            "lone request right after",
            f"{stress.ms(lone)} ms",
            f"<= {stress.ms(lone_limit)} ms (idle {stress.ms(idle)} ms)",
            lone is not None and lone_limit is not None and lone <= lone_limit,
        ),
    ]


def markdown(results: dict) -> list[str]:
    capacity, latency, config = results["capacity"], results["latency_ms"], results["config"]
    ok, refused, retry = latency.get("200", {}), latency.get("503", {}), results["retry_after_ms"]
    recovery, cpu = results["recovery"], results["server_cpu_s"]
    rows = [
        ["requests sent", str(results["sent"])],
        ["answers (by status)", stress.listed(results["outcomes"])],
        ["error codes", stress.listed(results["codes"])],
        ["lost", str(results["lost"])],
        ["200 latency p50 / p99 ms", stress.ms(ok.get("p50"), ok.get("p99"))],
        ["503 latency p50 / p99 / max ms", stress.ms(*(refused.get(k) for k in PERCENTILES))],
        ["Retry-After-Ms p50 / max", stress.ms(retry["p50"], retry["max"])],
        ["answers/s (every status)", f"{results['sent'] / config['duration_s']:.0f}"],
        ["images/s answered 200 in the flood", f"{results['ok_images_per_s']:.1f}"],
        ["refusals counted by the server", f"{results['refused_counter'] or 0:.0f}"],
        ["server / client CPU s", stress.ms(cpu, results["client_cpu_s"])],
        ["/health saturation right after", str(recovery["saturation"])],
        [
            "lone requests right after, ms",
            f"{stress.ms(recovery['lone_ms'])}, then {stress.ms(*recovery['then_ms'], sep=', ')}",
        ],
    ]
    return [
        f"# Overload: {config['clients']} clients for {config['duration_s']:g} s, "
        f"admission bound {BOUND} requests / {BOUND} images",
        "",
        f"Capacity: {capacity['images_per_s']:.1f} images/s at {CAPACITY_CLIENTS} clients "
        f"(p50 / p99 {stress.ms(capacity['p50_ms'], capacity['p99_ms'])} ms); a lone request on "
        f"the idle server: {stress.ms(results['idle_ms'])} ms (median of "
        f"{stress.ms(*results['idle_samples_ms'], sep=', ')}).",
        "",
        *markdown_table(["flood", "value"], rows),
    ]


def main(argv: list[str] | None = None) -> int:
    exit_on_sigterm()
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.overload", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--clients", type=int, default=10 * BOUND, help="default 320")
    parser.add_argument("--duration", type=float, default=20.0, help="flood seconds (default 20)")
    parser.add_argument("--out", type=Path, help="default runs/overload/<UTC time>")
    stress.add_service_env(parser)
    args = parser.parse_args(argv)
    settings = SETTINGS | dict(args.service_env)
    out = stress.run_folder("overload", args.out)
    results = {
        **stress.run_record("benchmarks.overload", argv),
        "config": {"clients": args.clients, "duration_s": args.duration, "service_env": settings},
    }
    with stress.service_process("overload", settings, out / "logs") as server:
        results |= run(server, args)
    return stress.finish(out, results, markdown(results), checks(results), server)


if __name__ == "__main__":
    raise SystemExit(main())
