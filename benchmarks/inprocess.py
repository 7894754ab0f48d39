"""The in-process ceiling: the service's model and preprocessing in a plain loop, no HTTP, no batcher.

Run by the harness in its own process (so its torch thread setting cannot leak into anything
else) with the service's ``RESNET_SERVE_*`` settings, after the same warm-up as the service, it
prints one JSON object:

- batch 1: decode, preprocess, forward and softmax one image at a time, serially, for
  ``--duration`` seconds: images/s and the per-image latency percentiles;
- the batch sweep: for each size, decode the batch's images one after another, then one forward
  pass; images/s per size, and the best.

    python -m benchmarks.inprocess --model-dir models/demo --device cpu --threads 2
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import time
from pathlib import Path

from benchmarks.classifier import Classifier
from benchmarks.images import photo_jpegs
from benchmarks.stats import LoadResult

BATCH_SIZES = (1, 2, 4, 8, 16, 32)
WARMUP_BATCHES = 3


def measure(
    classifier: Classifier, images: list[bytes], batch_size: int, seconds: float
) -> LoadResult:
    """Classify batches of ``batch_size`` for ``seconds``; each image is one "request"."""
    upload = itertools.cycle(images)

    def classify_batch() -> None:
        classifier.predict([classifier.prepare(next(upload)) for _ in range(batch_size)])

    for _ in range(WARMUP_BATCHES):
        classify_batch()
    result = LoadResult(window_s=0.0)
    started = time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        batch_started = time.perf_counter()
        classify_batch()
        result.latencies_s += [time.perf_counter() - batch_started] * batch_size
        result.statuses["200"] += batch_size
    result.window_s = elapsed
    return result


def run(model_dir: Path, device: str, threads: int, duration_s: float) -> dict:
    """Batch 1 for ``duration_s``, then the sweep at half that per size."""
    classifier = Classifier(model_dir, device, threads)
    asyncio.run(classifier.warm_up())
    images = photo_jpegs()
    batch_1 = measure(classifier, images, 1, duration_s).summary()
    sweep = {
        size: measure(classifier, images, size, duration_s / 2).summary()["images_per_s"]
        for size in BATCH_SIZES
    }
    best = max(sweep, key=sweep.__getitem__)
    return {
        "device": str(classifier.runner.device),
        "precision": classifier.runner.precision,
        "threads": threads,
        "batch_1": batch_1,
        "sweep_images_per_s": sweep,
        "best_batch": best,
        "best_images_per_s": sweep[best],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds at batch 1")
    args = parser.parse_args()
    print(json.dumps(run(args.model_dir, args.device, args.threads, args.duration)))


if __name__ == "__main__":
    main()
