"""Resident memory through a flood of large uploads, and what ``malloc_trim`` gives back.

    .venv/bin/python -m benchmarks.memory_flood
    MALLOC_ARENA_MAX=2 .venv/bin/python -m benchmarks.memory_flood
    .venv/bin/python -m benchmarks.memory_flood --trim-pixels 200000000  # MemoryTrimmer in the loop

Decodes random-noise 6000x4000 PNGs and JPEGs (the worst case for both codecs) with the service's
``UploadDecoder`` on a 2-thread pool, as the decode workers do, and prints RSS before, at the peak,
after the flood, and after one trim. With ``--trim-pixels`` each decode also notes its pixels to a
running ``MemoryTrimmer``, as the pipeline will. No server and no model.
"""

from __future__ import annotations

import argparse
import io
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from app.model.bundle import read_manifest
from app.model.preprocessing import UploadDecoder, decode_image
from app.serving.memory import MemoryTrimmer, rss_bytes, trim_heap
from app.settings import Settings

WIDTH, HEIGHT = 6000, 4000
DEMO_BUNDLE = Path(__file__).resolve().parent.parent / "models" / "demo"


def _noise(fmt: str, width: int, height: int, seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, fmt, **({"compress_level": 1} if fmt == "PNG" else {}))
    return buffer.getvalue()


def _mb(value: int | None) -> str:
    return "n/a" if value is None else f"{value / 2**20:.0f} MB"


def _flood(decode: Callable[[bytes], None], bodies: list[bytes], images: int, threads: int) -> int:
    """Decode ``images`` bodies on ``threads`` threads; returns the peak RSS, sampled every 5 ms."""
    peak, done = rss_bytes() or 0, threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.005):
            peak = max(peak, rss_bytes() or 0)

    sampler = threading.Thread(target=sample)
    sampler.start()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(decode, (bodies[i % len(bodies)] for i in range(images))))
    done.set()
    sampler.join()
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--trim-pixels", type=int, default=0, help="MemoryTrimmer threshold")
    parser.add_argument("--trim-interval", type=float, default=2.0)
    args = parser.parse_args()
    bodies = [_noise(fmt, WIDTH, HEIGHT, seed) for seed, fmt in enumerate(("PNG", "JPEG") * 2)]
    decoder = UploadDecoder(read_manifest(DEMO_BUNDLE).preprocessing, Settings().max_image_pixels)
    trimmer = MemoryTrimmer(args.trim_pixels, args.trim_interval) if args.trim_pixels else None

    def decode(data: bytes) -> None:
        image = decode_image(data, decoder.max_pixels, decoder.draft_size)  # UploadDecoder's steps
        decoder.transform(image)
        if trimmer is not None:
            trimmer.note(image.width * image.height)

    tunables = " ".join(f"{k}={v}" for k, v in os.environ.items() if k.startswith("MALLOC_"))
    print(
        f"{args.images} images of {WIDTH}x{HEIGHT}, {args.threads} threads,"
        f" {tunables or 'glibc defaults'}"
    )
    trim_heap()  # start from a clean heap: making the bodies left garbage behind
    start = rss_bytes()
    began = time.perf_counter()
    if trimmer is not None:
        trimmer.start()
    peak = _flood(decode, bodies, args.images, args.threads)
    seconds = time.perf_counter() - began
    print(
        f"  start {_mb(start)}, peak {_mb(peak)},"
        f" after the flood {_mb(rss_bytes())} ({seconds:.1f} s)"
    )
    if trimmer is not None:
        time.sleep(2.5 * args.trim_interval)  # the quiet tick that follows a flood
        trimmer.close()
        print(
            f"  with MemoryTrimmer({args.trim_pixels}, {args.trim_interval} s):"
            f" {trimmer.trims} trims,"
            f" {_mb(rss_bytes())} after its quiet tick"
        )
    began = time.perf_counter()
    released = trim_heap()
    trim_ms = (time.perf_counter() - began) * 1000
    print(f"  after malloc_trim(0): {_mb(rss_bytes())} ({trim_ms:.1f} ms, released={released})")


if __name__ == "__main__":
    main()
