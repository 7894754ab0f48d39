"""Model-only throughput: the project's own forward pass, timed on the device, no HTTP, no decoding.

For each architecture, precision, mode and batch size, a uint8 batch already on the device goes
through ``ModelRunner._compute`` (normalise -> forward -> softmax): called directly in ``eager``
mode, replayed from ``app.serving.cuda_graphs.CapturedForward`` in ``graphs`` mode, so what is measured is
exactly what the service runs. Each point is timed with CUDA events, after warm-up calls (cuDNN
autotuning happens there), as the fastest of three runs that together last ``--seconds``. Then, at each (arch, precision)'s best point,
one line for the whole ``ModelRunner.predict`` path (host uint8 -> pinned stack -> copy -> forward
-> copy back) with as many batches in flight as the service keeps: the gap between the two lines is
what the host side and the transfers cost.

On a machine without CUDA only fp32 in eager mode runs (the runner's own rule), so the sweep can be
tried anywhere at small sizes:

    python -m benchmarks.gpu.model_sweep --out runs/gpu/model_sweep.json
    python -m benchmarks.gpu.model_sweep --archs resnet18 --size 64 --batches 1,2,4 --seconds 0.05 \
        --out /tmp/model_sweep.json
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import math
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from app.model.devices import DTYPES
from app.serving.cuda_graphs import CapturedForward
from app.serving.runner import ModelRunner, RunnerOptions
from app.settings import Settings
from benchmarks.gpu.bundles import write_random_bundle
from benchmarks.jsonfile import write_json

WARM_UP_CALLS = 3
MIN_CALLS = 3
REPEATS = 3
SERVICE_BATCHES_IN_FLIGHT = Settings.model_fields["batches_in_flight"].default
MODES = ("eager", "graphs")


@dataclass(frozen=True)
class Point:
    """One measured configuration."""

    arch: str
    precision: str
    mode: str
    batch: int
    images_per_s: float
    ms_per_batch: float


def _csv(text: str) -> list[str]:
    return [item for item in text.split(",") if item]


def _elapsed_s(call: Callable[[], object], calls: int, device: torch.device) -> float:
    """Seconds for ``calls`` calls: CUDA events on a GPU (the device's own clock), else the wall."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(calls):
            call()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1000
    started = time.perf_counter()
    for _ in range(calls):
        call()
    return time.perf_counter() - started


def seconds_per_call(call: Callable[[], object], device: torch.device, budget_s: float) -> float:
    """Seconds per call over about ``budget_s`` after a warm-up: the fastest of ``REPEATS`` runs,
    so a one-off stall (a clock still ramping up, a busy host) does not pass for the model's speed."""
    for _ in range(WARM_UP_CALLS):
        call()
    one = _elapsed_s(call, 1, device)
    calls = max(MIN_CALLS, math.ceil(budget_s / REPEATS / max(one, 1e-6)))
    return min(_elapsed_s(call, calls, device) for _ in range(REPEATS)) / calls


def _point(runner: ModelRunner, mode: str, batch: int, seconds: float) -> Point:
    return Point(
        runner.bundle.manifest.arch, runner.precision, mode, batch, batch / seconds, 1000 * seconds
    )


def sweep(
    runner: ModelRunner, modes: list[str], batches: list[int], budget_s: float
) -> list[Point]:
    """Time ``runner._compute`` at every batch size, eagerly and/or replayed from graphs."""
    inputs = {
        batch: torch.randint(
            0, 256, (batch, *runner.image_shape), dtype=torch.uint8, device=runner.device
        )
        for batch in batches
    }
    points = []
    with torch.inference_mode():
        for mode in modes:
            if mode == "graphs":
                forward = CapturedForward(
                    runner._compute, batches, runner.image_shape, runner.device
                )
            else:
                forward = runner._compute
            for batch in batches:
                call = functools.partial(forward, inputs[batch])
                seconds = seconds_per_call(call, runner.device, budget_s)
                points.append(_point(runner, mode, batch, seconds))
                print(_line(points[-1]), flush=True)
    return points


def predict_rate(
    runner: ModelRunner, images: list[torch.Tensor], budget_s: float
) -> tuple[float, float]:
    """Images/s and mean ms per call of ``runner.predict(images)``, called from as many threads
    as the runner keeps batches in flight (the batcher's way of calling it)."""
    for _ in range(WARM_UP_CALLS):
        runner.predict(images)
    deadline = time.perf_counter() + budget_s

    def loop() -> list[float]:
        durations = []
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            runner.predict(images)
            durations.append(time.perf_counter() - started)
        return durations

    started = time.perf_counter()
    with ThreadPoolExecutor(runner.batches_in_flight) as threads:
        futures = [threads.submit(loop) for _ in range(runner.batches_in_flight)]
        durations = [d for future in futures for d in future.result()]
    elapsed = time.perf_counter() - started
    return len(durations) * len(images) / elapsed, 1000 * sum(durations) / len(durations)


def runner_path(model_dir: Path, device: str, best: Point, budget_s: float) -> dict:
    """``predict`` on host tensors at ``best``'s batch and mode, set up as the service sets it up;
    the point, and how many batches were in flight."""
    options = RunnerOptions(
        max_batch_size=best.batch,
        cuda_graphs=best.mode == "graphs",
        batches_in_flight=SERVICE_BATCHES_IN_FLIGHT,
    )
    runner = ModelRunner.load(str(model_dir), device, best.precision, options)
    try:
        if options.cuda_graphs:
            asyncio.run(runner.warm_up())  # captures the graphs, as the service's start-up does
        images = [
            torch.randint(0, 256, runner.image_shape, dtype=torch.uint8) for _ in range(best.batch)
        ]
        images_per_s, ms = predict_rate(runner, images, budget_s)
    finally:
        runner.close()
    point = Point(best.arch, best.precision, best.mode, best.batch, images_per_s, ms)
    print(_line(point, "predict"), flush=True)
    return asdict(point) | {"batches_in_flight": runner.batches_in_flight}


def _line(point: Point, path: str = "on device") -> str:
    return (
        f"{path:<9} {point.arch:<9} {point.precision:<5} {point.mode:<6} batch {point.batch:>4}: "
        f"{point.images_per_s:>10.1f} img/s  {point.ms_per_batch:8.3f} ms/batch"
    )


def _best(points: list[Point]) -> Point:
    return max(points, key=lambda p: p.images_per_s)


def _results(setup: dict, points: list[Point], predict_points: list[dict]) -> dict:
    configurations = dict.fromkeys((p.arch, p.precision, p.mode) for p in points)
    return setup | {
        "points": [asdict(p) for p in points],
        "best": [
            asdict(_best([p for p in points if (p.arch, p.precision, p.mode) == configuration]))
            for configuration in configurations
        ],
        "predict": predict_points,
    }


def run(args: argparse.Namespace) -> Iterator[dict]:
    """The sweep, one (arch, precision) at a time; after each, everything measured so far (so a
    run cut short by a time limit still leaves its numbers)."""
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    setup = {
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "torch": torch.__version__,
        "size": args.size,
        "seconds_per_point": args.seconds,
        "notes": [] if cuda else ["No CUDA here: fp32 in eager mode only."],
    }
    points: list[Point] = []
    predict_points: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="model-sweep-") as scratch:
        for arch in args.archs:
            model_dir = write_random_bundle(Path(scratch) / arch, arch, args.size)
            for precision in args.precisions if cuda else ["fp32"]:
                runner = ModelRunner.load(str(model_dir), device, precision, RunnerOptions())
                measured = sweep(
                    runner, args.modes if cuda else ["eager"], args.batches, args.seconds
                )
                runner.close()
                del runner
                if cuda:
                    torch.cuda.empty_cache()  # the next model starts from a clean allocator
                points += measured
                predict_points.append(runner_path(model_dir, device, _best(measured), args.seconds))
                yield _results(setup, points, predict_points)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # The targets' configuration first, so a run cut short by its time limit still measured it.
    parser.add_argument("--archs", type=_csv, default=["resnet50", "resnet18"])
    parser.add_argument("--size", type=int, default=224, help="input side in pixels")
    parser.add_argument("--precisions", type=_csv, default=["bf16", "fp32"])
    parser.add_argument("--modes", type=_csv, default=list(MODES))
    parser.add_argument(
        "--batches",
        type=lambda text: sorted({int(b) for b in _csv(text)}),
        default=[2**k for k in range(9)],
        help="default 1,2,4,...,256",
    )
    parser.add_argument("--seconds", type=float, default=0.3, help="timed seconds per point")
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    return parser


def main() -> None:
    args = build_parser().parse_args()
    unknown = (set(args.modes) - set(MODES)) | (set(args.precisions) - set(DTYPES))
    if unknown:
        raise SystemExit(f"error: unknown mode(s) or precision(s): {', '.join(sorted(unknown))}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for results in run(args):
        write_json(args.out, results)


if __name__ == "__main__":
    main()
