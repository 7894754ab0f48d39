"""Throughput and latency of the HTTP service against a plain in-process loop of the same model.

    .venv/bin/python benchmarks/throughput.py --clients 32 --requests 1500 --write docs/benchmarks.md

1. In-process baseline: decode, preprocess and classify one image at a time, as a hand-rolled script
   would (the same functions the service uses, so only batching and HTTP differ).
2. The service: `resnet-serve serve` in a subprocess, then a closed loop of concurrent clients, each
   posting one JPEG at a time as the raw body. Reports images/s, latency percentiles and the mean batch
   size the service reported.
The load generator runs on the same machine, so on a small CPU it competes with the server for cores:
the comparison is conservative for the service.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path

import httpx
import numpy as np
import torch

from app.model.bundle import load_bundle
from app.preprocessing import decode_image, eval_transform
from app.runner import resolve_device
from app.training.demo_data import CLASSES, render_image

REPO = Path(__file__).resolve().parent.parent


def _images(count: int) -> list[bytes]:
    images = []
    for i in range(count):
        buffer = BytesIO()
        render_image(CLASSES[i % len(CLASSES)], np.random.default_rng(50_000 + i)).save(
            buffer, "JPEG", quality=90
        )
        images.append(buffer.getvalue())
    return images


def in_process_loop(model_dir: Path, device: str, images: list[bytes], seconds: float) -> float:
    """Images per second of decode -> preprocess -> forward(batch of 1) -> softmax, serially."""
    resolved = resolve_device(device, "fp32")
    bundle = load_bundle(model_dir, device=resolved)
    transform = eval_transform(bundle.manifest.preprocessing)

    def classify(data: bytes) -> None:
        tensor = transform(decode_image(data, 10**8))[None].to(resolved)
        with torch.inference_mode():
            torch.softmax(bundle.model(tensor), dim=1).cpu()

    for data in images[:10]:
        classify(data)
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        classify(images[done % len(images)])
        done += 1
    return done / (time.perf_counter() - started)


async def _client(
    client: httpx.AsyncClient, images: list[bytes], budget: list[int], stats: dict
) -> None:
    while budget[0] > 0:
        budget[0] -= 1
        data = images[budget[0] % len(images)]
        started = time.perf_counter()
        response = await client.post(
            "/predict", content=data, headers={"Content-Type": "image/jpeg"}
        )
        stats["latency"].append(time.perf_counter() - started)
        if response.status_code == 200:
            stats["batch"].append(response.json()["results"][0]["batch_size"])
        else:
            stats["errors"] += 1


async def load(url: str, images: list[bytes], clients: int, requests: int) -> dict:
    """Closed loop: ``clients`` tasks each keep one request in flight until ``requests`` are done."""
    stats: dict = {"latency": [], "batch": [], "errors": 0}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as client:
        warm_up: dict = {"latency": [], "batch": [], "errors": 0}
        warm_budget = [clients * 2]  # opens every connection before the clock starts
        await asyncio.gather(
            *(_client(client, images, warm_budget, warm_up) for _ in range(clients))
        )
        budget = [requests]
        started = time.perf_counter()
        await asyncio.gather(*(_client(client, images, budget, stats) for _ in range(clients)))
        stats["seconds"] = time.perf_counter() - started
    stats["requests"] = requests
    return stats


def serve_and_load(args: argparse.Namespace, images: list[bytes]) -> dict:
    env = {
        **os.environ,
        "RESNET_SERVE_MODEL_DIR": str(args.model_dir),
        "RESNET_SERVE_PORT": str(args.port),
        "RESNET_SERVE_DEVICE": args.device,
        "RESNET_SERVE_MAX_BATCH_SIZE": str(args.max_batch_size),
        "RESNET_SERVE_LOG_LEVEL": "warning",
    }
    cli = Path(sys.executable).with_name("resnet-serve")
    server = subprocess.Popen([str(cli), "serve"], env=env)
    url = f"http://127.0.0.1:{args.port}"
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/health/ready").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        return asyncio.run(load(url, images, args.clients, args.requests))
    finally:
        server.terminate()
        server.wait(60)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu}, {os.cpu_count()} cores, {gpu}; torch {torch.__version__}, Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=REPO / "models" / "demo")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--requests", type=int, default=1500)
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--baseline-seconds", type=float, default=20.0)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--write", type=Path, help="append a result section to this Markdown file")
    args = parser.parse_args()

    images = _images(64)
    baseline = in_process_loop(args.model_dir, args.device, images, args.baseline_seconds)
    stats = serve_and_load(args, images)
    throughput = stats["requests"] / stats["seconds"]
    latency_ms = sorted(1000 * s for s in stats["latency"])

    def pct(q: float) -> float:
        return latency_ms[min(len(latency_ms) - 1, int(q * len(latency_ms)))]

    rows = [
        f"### {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {args.model_dir.name}, {args.clients} clients",
        "",
        f"Machine: {machine()}. Device setting `{args.device}`, max batch size {args.max_batch_size}, "
        f"{args.requests} requests of one JPEG each.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| in-process loop, batch 1 | {baseline:.1f} images/s |",
        f"| service, {args.clients} concurrent clients | {throughput:.1f} images/s "
        f"({100 * throughput / baseline:.0f}% of the loop) |",
        f"| mean batch size | {statistics.mean(stats['batch']):.2f} |",
        f"| latency p50 / p95 / p99 | {pct(0.5):.1f} / {pct(0.95):.1f} / {pct(0.99):.1f} ms |",
        f"| errors | {stats['errors']} |",
        "",
    ]
    text = "\n".join(rows)
    print(text)
    if args.write:
        with args.write.open("a", encoding="utf-8") as handle:
            handle.write(text + "\n")


if __name__ == "__main__":
    main()
