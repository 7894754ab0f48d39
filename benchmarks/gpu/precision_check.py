"""Does half precision change the answers? fp32, fp16 and bf16 on the GPU against fp32 on the CPU.

Two models, each on inputs decoded exactly as the service decodes uploads (JPEG bytes ->
``decode_image`` with the draft size -> ``pixel_transform``):

- the demo bundle (trained, 112 px) on freshly drawn demo images with seeds it never saw, so its
  accuracy against the true class is known too;
- a random-weight ResNet-50 at 224 px on the photo-like JPEGs of the HTTP benchmark. Random weights
  send most inputs to the same few classes, so its top-1 agreement is easy to keep; the probability
  differences are the informative numbers there, and ``distinct top-1`` says how easy it was.

Every run goes through ``ModelRunner.predict`` with CUDA graphs, as the service runs. The reference
is the fp32 model on the CPU, which uses no TF32, so even the GPU's fp32 row shows a difference.
Beside top-1 agreement each row gives abstain agreement: how often ``app.serving.runner.abstains`` with the
bundle's calibrated threshold decides the same way as on the reference (the demo's threshold,
0.99993, sits where a rounding error in the last digits decides; the random bundle has none, so it
never abstains and agrees trivially). Without CUDA only fp32 on the CPU runs against itself: a
check of the path, not of the numbers.

The JSON file is rewritten after each model, so a run stopped by a time limit keeps the first.

    python -m benchmarks.gpu.precision_check --out runs/gpu/precision.json
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from app.model.bundle import read_manifest
from app.model.preprocessing import PreprocessingSpec, decode_image, pixel_transform
from app.serving.runner import ModelRunner, RunnerOptions, abstains
from app.training.demo_data import CLASSES, render_image
from benchmarks.gpu.bundles import write_random_bundle
from benchmarks.images import photo_jpegs
from benchmarks.jsonfile import write_json

REPO = Path(__file__).resolve().parents[2]
UNSEEN_SEEDS = (
    50_000  # training drew from [seed, class, index] sequences, the tests from 10_000 + n
)
JPEG_QUALITY = 90
MAX_PIXELS = 10**8
PHOTO_SEED = 7  # other photos than the HTTP benchmark's, which uses seed 0
# No ABSTAIN_LABELS: the service's default settings; the threshold is each bundle's own.
REJECTED: frozenset[int] = frozenset()


def _decoder(spec: PreprocessingSpec) -> Callable[[bytes], torch.Tensor]:
    """JPEG bytes -> uint8 model input, as ``app.serving.pipeline`` prepares an upload."""
    transform = pixel_transform(spec)
    return lambda data: transform(decode_image(data, MAX_PIXELS, spec.resize_size))


def demo_inputs(spec: PreprocessingSpec, count: int) -> tuple[list[torch.Tensor], list[str]]:
    """``count`` unseen demo images, the classes in turn, and their true labels."""
    decode = _decoder(spec)
    images, labels = [], []
    for index in range(count):
        label = CLASSES[index % len(CLASSES)]
        buffer = io.BytesIO()
        image = render_image(label, np.random.default_rng(UNSEEN_SEEDS + index))
        image.save(buffer, "JPEG", quality=JPEG_QUALITY)
        images.append(decode(buffer.getvalue()))
        labels.append(label)
    return images, labels


def probabilities(
    model_dir: Path, device: str, precision: str, images: list[torch.Tensor], batch: int
) -> torch.Tensor:
    """(N, classes) float32 probabilities from ``ModelRunner.predict``, graphs on where CUDA is."""
    options = RunnerOptions(max_batch_size=batch, cuda_graphs=device == "cuda")
    runner = ModelRunner.load(str(model_dir), device, precision, options)
    try:
        if options.cuda_graphs:
            asyncio.run(runner.warm_up())
        rows = [
            row
            for start in range(0, len(images), batch)
            for row in runner.predict(images[start : start + batch])
        ]
    finally:
        runner.close()
    return torch.stack(rows)


def abstentions(probabilities: torch.Tensor, threshold: float) -> torch.Tensor:
    """Per row, whether the service would answer it ``abstained: true``."""
    return torch.tensor([abstains(row, threshold, REJECTED) for row in probabilities])


def _pct(flags: torch.Tensor) -> float:
    return 100 * flags.float().mean().item()


def compare(
    reference: torch.Tensor, candidate: torch.Tensor, truth: torch.Tensor | None, threshold: float
) -> dict[str, float | int | None]:
    """Top-1 and abstain agreement, probability differences and (where labels are known)
    accuracies."""
    difference = (candidate - reference).abs()
    top1, reference_top1 = candidate.argmax(1), reference.argmax(1)
    reference_abstains = abstentions(reference, threshold)
    return {
        "images": len(reference),
        "top1_agreement_pct": _pct(top1 == reference_top1),
        "abstain_threshold": threshold,
        "abstain_agreement_pct": _pct(abstentions(candidate, threshold) == reference_abstains),
        "reference_abstain_pct": _pct(reference_abstains),
        "max_abs_diff": difference.max().item(),
        "mean_abs_diff": difference.mean().item(),
        "distinct_top1": reference_top1.unique().numel(),
        "accuracy_pct": None if truth is None else _pct(top1 == truth),
        "reference_accuracy_pct": None if truth is None else _pct(reference_top1 == truth),
    }


def check_model(
    name: str,
    model_dir: Path,
    images: list[torch.Tensor],
    truth: torch.Tensor | None,
    precisions: list[str],
    device: str,
    batch: int,
) -> list[dict]:
    """One row per precision: that precision on ``device`` against fp32 on the CPU."""
    threshold = read_manifest(model_dir).abstain_threshold
    reference = probabilities(model_dir, "cpu", "fp32", images, batch)
    rows = []
    for precision in precisions:
        candidate = probabilities(model_dir, device, precision, images, batch)
        row = {"model": name, "precision": precision, "device": device}
        rows.append(row | compare(reference, candidate, truth, threshold))
        print(json.dumps(rows[-1]), flush=True)
    return rows


def run(args: argparse.Namespace) -> Iterator[dict]:
    """The demo model, then the random one; after each, every row so far."""
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    precisions = ["fp32", "fp16", "bf16"] if cuda else ["fp32"]
    notes = [] if cuda else ["No CUDA here: fp32 on the CPU against itself; fp16 and bf16 skipped."]
    setup = {"reference": "fp32 on the CPU", "graphs": cuda, "notes": notes}
    manifest = read_manifest(args.demo_bundle)
    images, labels = demo_inputs(manifest.preprocessing, args.demo_images)
    truth = torch.tensor([manifest.labels.index(label) for label in labels])
    rows = check_model(
        f"demo ({manifest.arch}, {manifest.preprocessing.input_size} px, trained)",
        args.demo_bundle,
        images,
        truth,
        precisions,
        device,
        args.batch,
    )
    yield setup | {"rows": rows}
    with tempfile.TemporaryDirectory(prefix="precision-check-") as scratch:
        model_dir = write_random_bundle(Path(scratch) / args.arch, args.arch, args.size)
        decode = _decoder(read_manifest(model_dir).preprocessing)
        photos = [decode(data) for data in photo_jpegs(args.photos, seed=PHOTO_SEED)]
        rows += check_model(
            f"{args.arch} ({args.size} px, random weights)",
            model_dir,
            photos,
            None,
            precisions,
            device,
            args.batch,
        )
    yield setup | {"rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--demo-bundle", type=Path, default=REPO / "models" / "demo")
    parser.add_argument("--demo-images", type=int, default=320)
    parser.add_argument("--arch", default="resnet50", help="the random-weight model")
    parser.add_argument("--size", type=int, default=224, help="its input side in pixels")
    parser.add_argument("--photos", type=int, default=128, help="photo-like inputs for it")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for results in run(args):
        write_json(args.out, results)


if __name__ == "__main__":
    main()
