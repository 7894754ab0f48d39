"""One benchmark run: the in-process ceiling, then each HTTP system in turn, at every point.

Systems run one after the other, never side by side; each is started once and measured at every
body type and concurrency before it is stopped. For every point the load processes warm up, then
measure a fixed window, while the harness samples the server's CPU time and (for resnet-serve) its
batch-size histogram at the window's two edges.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks import observe
from benchmarks.bodies import BodyKind, encode
from benchmarks.images import photo_jpegs
from benchmarks.loadgen import LoadGenerator, LoadPlan
from benchmarks.servers.process import ServerProcess, free_port
from benchmarks.stats import LoadResult
from benchmarks.systems import RunSettings, System, child_environment, model_env


@dataclass(frozen=True)
class Plan:
    """Everything a run measures, decided before it starts."""

    settings: RunSettings
    inprocess: bool
    systems: tuple[System, ...]
    bodies: tuple[BodyKind, ...]
    concurrency: tuple[int, ...]
    warmup_s: float
    duration_s: float
    client_processes: int
    logs: Path


def _sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.monotonic()))


def inprocess_ceiling(settings: RunSettings, duration_s: float) -> dict:
    """``benchmarks.inprocess`` in a child process, so its thread setting stays there."""
    command = [
        sys.executable,
        "-m",
        "benchmarks.inprocess",
        f"--model-dir={settings.model_dir}",
        f"--device={settings.device}",
        f"--threads={settings.threads}",
        f"--duration={duration_s}",
    ]
    env = child_environment(model_env(settings))
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode:
        raise RuntimeError(f"in-process ceiling failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout)


def measure_point(
    server: ServerProcess, system: System, load: LoadGenerator, plan: LoadPlan
) -> dict:
    """Load ``server`` as ``plan`` says; the summary plus what the server did in the window."""
    plan, futures = load.submit(plan)
    _sleep_until(plan.window_start)
    before = observe.sample(server.url, server.group, system.reports_batches)
    _sleep_until(plan.window_end)
    after = observe.sample(server.url, server.group, system.reports_batches)
    result = LoadResult.merge(future.result() for future in futures)
    images_per_request = plan.bodies[0].images  # the same in every body of a kind
    summary = result.summary(images_per_request)
    images = result.statuses["200"] * images_per_request
    server_cpu_s = after.cpu_since(before)
    return {
        **summary,
        "mean_batch": after.mean_batch_since(before),
        "server_cpu_s": server_cpu_s,
        "server_cpu_ms_per_image": (
            1000 * server_cpu_s / images if server_cpu_s is not None and images else None
        ),
    }


def _point_line(point: dict) -> str:
    errors = sum(point["errors"].values())
    return (
        f"  {point['system']:<14} {point['body']:<9} c={point['concurrency']:<4} "
        f"{point['images_per_s']:8.1f} img/s  p50 {point['p50_ms'] or 0:7.1f} ms  "
        f"p99 {point['p99_ms'] or 0:7.1f} ms  errors {errors}"
    )


def measure_system(
    system: System, plan: Plan, load: LoadGenerator, images: list[bytes]
) -> list[dict]:
    """Start ``system``, measure every body and concurrency it takes, stop it."""
    port = free_port()
    points = []
    server = ServerProcess(
        system.command(port),
        system.environment(port),
        port,
        system.ready_path,
        plan.logs / f"{system.name}.log",
    )
    with server:
        for body in (b for b in plan.bodies if b in system.bodies):
            bodies = tuple(encode(images, body, plan.settings.model_name))
            for concurrency in plan.concurrency:
                load_plan = LoadPlan(
                    url=server.url,
                    bodies=bodies,
                    concurrency=concurrency,
                    warmup_s=plan.warmup_s,
                    duration_s=plan.duration_s,
                )
                point = {"system": system.name, "body": body, "concurrency": concurrency}
                point |= measure_point(server, system, load, load_plan)
                print(_point_line(point), flush=True)
                points.append(point)
    return points


def run(plan: Plan, checkpoint: Callable[[dict], object] = lambda results: None) -> dict:
    """Measure everything in ``plan``; the raw results, as written to results.json.

    ``checkpoint`` gets the results so far after the in-process ceiling and after each system, so
    a run stopped by a time limit still leaves every system it finished.
    """
    images = photo_jpegs()
    results: dict = {
        "images": {"count": len(images), "mean_bytes": sum(map(len, images)) / len(images)},
        "inprocess": None,
        "points": [],
    }
    print(f"{len(images)} photo-like JPEGs, mean {results['images']['mean_bytes'] / 1000:.1f} KB")
    if plan.inprocess:
        print("in-process ceiling ...", flush=True)
        results["inprocess"] = inprocess_ceiling(plan.settings, plan.duration_s)
        checkpoint(results)
    load = LoadGenerator(plan.client_processes)
    try:
        for system in plan.systems:
            print(f"{system.name}: {system.description}", flush=True)
            results["points"] += measure_system(system, plan, load, images)
            checkpoint(results)
    finally:
        load.close()
    return results
