"""Are the served answers right on the device? Every upload's top-1, served under concurrent load,
against the CPU path's top-1 for the same file.

The demo bundle is served by ``resnet-serve serve`` in one variant after another, each loaded by
``--clients`` concurrent clients (the project's own ``app.client``, one image per request, every
upload ``--repeats`` times) with the mixed uploads of ``mixed_images`` (500x375 and 4000x3000
JPEGs, PNGs, EXIF-rotated JPEGs). The reference is the CPU path: the service's own decoding and the
fp32 model on the CPU (``app.cli.offline``, what ``resnet-serve predict --bundle`` runs).

On CUDA the variants are ``GPU_DECODE`` off and on (both with CUDA graphs, as the service defaults)
and CUDA graphs off; the labels with graphs on and off are also compared with each other. Without
CUDA those rows say "skipped: no CUDA", and the service on the CPU is compared instead: the same
plumbing, where 0 mismatches are expected.

Tolerance: a mismatch counts against the goal of 0 unless the CPU path's top-1 led its runner-up
by less than ``TIE_MARGIN``. Measured on these uploads, two correct decodes of one JPEG (Pillow's
draft mode against a full-size decode, the difference nvJPEG makes) moved a demo probability by up
to 0.16, and bf16 against fp32 by 0.025; a move of d in each of two probabilities shifts their gap
by up to 2d, so a gap under 2 x (0.16 + 0.025) ~ 0.4 may legitimately flip. The drawn images are
clear, so few or none fall inside it: the report counts them (near ties).

Each variant's device memory is read before and after its load (``server_memory``). The JSON file
is rewritten after each variant, so a run stopped by a time limit keeps those it finished. Exits 1
when an untolerated mismatch, a failed request or a variant that did not run is found.

    python -m benchmarks.gpu.correctness --out runs/gpu/correctness.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from app.cli.offline import classify_files
from app.cli.prediction import Outcome, classify_all
from app.client.models import ResnetConnectionError
from app.settings import Settings
from benchmarks.gpu import server_memory
from benchmarks.gpu.mixed_images import Upload, mixed_uploads, write_uploads
from benchmarks.jsonfile import write_json
from benchmarks.servers.process import (
    ServerProcess,
    ServerStartError,
    exit_on_sigterm,
    free_port,
)
from benchmarks.systems import RunSettings, service

REPO = Path(__file__).resolve().parents[2]
TIE_MARGIN = 0.4
NO_CUDA = "skipped: no CUDA"
TOP_K = 2  # the runner-up's score gives the reference's margin
MIN_CLIENTS = 8  # enough to fill batches and overlap decodes: the load the answers must survive


@dataclass(frozen=True)
class Variant:
    """One way of serving the bundle: its settings, and whether it needs CUDA."""

    name: str
    settings: dict[str, str]
    on_cuda: bool


VARIANTS = (
    Variant("cpu", {"DEVICE": "cpu"}, on_cuda=False),
    Variant("cuda", {"DEVICE": "cuda", "GPU_DECODE": "false"}, on_cuda=True),
    Variant("cuda-nvjpeg", {"DEVICE": "cuda", "GPU_DECODE": "true"}, on_cuda=True),
    Variant("cuda-no-graphs", {"DEVICE": "cuda", "CUDA_GRAPHS": "false"}, on_cuda=True),
)
GRAPHS_ON, GRAPHS_OFF = "cuda", "cuda-no-graphs"


def top1(outcome: Outcome) -> str:
    """The answer's top label, or its error code."""
    return outcome.result.predictions[0].label if outcome.result else f"error: {outcome.code}"


def margin(outcome: Outcome) -> float | None:
    """How far the top score led the runner-up's."""
    if outcome.result is None or len(outcome.result.predictions) < 2:
        return None
    first, second = outcome.result.predictions[:2]
    return first.score - second.score


def mismatches(
    uploads: Sequence[Upload], reference: Sequence[Outcome], served: Sequence[Outcome]
) -> list[dict]:
    """Every served answer whose top-1 is not the CPU path's for the same upload (``served`` is
    the uploads in order, repeated), marked tolerated when the reference was a near tie."""
    found = []
    for index, answer in enumerate(served):
        upload, expected = uploads[index % len(uploads)], reference[index % len(uploads)]
        if answer.result is None or top1(answer) == top1(expected):
            continue  # failed requests are counted as errors, not as mismatches
        gap = margin(expected)
        found.append(
            {
                "image": upload.name,
                "kind": upload.kind,
                "expected": top1(expected),
                "served": top1(answer),
                "reference_margin": gap,
                "tolerated": gap is not None and gap < TIE_MARGIN,
            }
        )
    return found


def serve_and_ask(
    variant: Variant, paths: list[Path], args: argparse.Namespace
) -> tuple[list[Outcome], dict]:
    """Start the variant, send every path ``args.repeats`` times from ``args.clients`` clients;
    the answers in order, and the server's memory before and after."""
    run = RunSettings(
        model_dir=args.bundle.resolve(),
        device="cuda" if variant.on_cuda else "cpu",
        threads=os.cpu_count() or 1,
    )
    settings = {"MAX_BATCH_SIZE": str(args.max_batch_size)} | variant.settings
    system = service(run, variant.name, settings)
    port = free_port()
    log = args.out.with_suffix("") / f"{variant.name}.log"
    with ServerProcess(
        system.command(port), system.environment(port), port, system.ready_path, log
    ) as server:
        before = server_memory.sample(server.url, server.group)
        answers = asyncio.run(
            classify_all(paths * args.repeats, server.url, None, TOP_K, args.clients)
        )
        after = server_memory.sample(server.url, server.group)
    return answers, {"before": before, "after": after}


def check_variant(
    variant: Variant,
    uploads: list[Upload],
    paths: list[Path],
    reference: list[Outcome],
    args: argparse.Namespace,
) -> tuple[dict, list[str]]:
    """One variant's row, and its top-1 labels in request order (empty when it did not run)."""
    row: dict = {"name": variant.name, "settings": variant.settings}
    try:
        served, memory = serve_and_ask(variant, paths, args)
    except (ServerStartError, ResnetConnectionError) as exc:
        return row | {"result": f"failed: {type(exc).__name__}", "detail": str(exc)}, []
    errors = Counter(outcome.code for outcome in served if outcome.result is None)
    found = mismatches(uploads, reference, served)
    untolerated = sum(not m["tolerated"] for m in found)
    failures = [f"{untolerated} mismatches"] * bool(untolerated)
    failures += [f"{sum(errors.values())} errors"] * bool(errors)
    row |= {
        "result": ", ".join(failures) or "ok",
        "requests": len(served),
        "errors": dict(errors),
        "mismatches": found,
        "untolerated": untolerated,
        "memory": memory,
    }
    return row, [top1(outcome) for outcome in served]


def compare_graphs(labels: dict[str, list[str]], reference: Sequence[Outcome]) -> dict:
    """CUDA graphs on against off: the requests whose top-1 differ, with the same tolerance."""
    on, off = labels.get(GRAPHS_ON), labels.get(GRAPHS_OFF)
    if not torch.cuda.is_available():
        return {"result": NO_CUDA}
    if not on or not off:
        return {"result": "failed: a graphs variant did not run"}
    differing = [
        index for index, pair in enumerate(zip(on, off, strict=True)) if len(set(pair)) > 1
    ]
    near_tie = [(margin(reference[i % len(reference)]) or 0.0) < TIE_MARGIN for i in differing]
    untolerated = near_tie.count(False)
    result = f"{untolerated} differ" if untolerated else "ok"
    return {"result": result, "differing": len(differing), "untolerated": untolerated}


def run(args: argparse.Namespace) -> dict:
    """Every variant in turn, the file rewritten after each; the final results."""
    cuda = torch.cuda.is_available()
    uploads = mixed_uploads(args.images)
    results: dict = {
        "bundle": str(args.bundle),
        "reference": "the CPU path: the service's decoding and the fp32 model on the CPU "
        "(app.cli.offline)",
        "clients": args.clients,
        "repeats": args.repeats,
        "tie_margin": TIE_MARGIN,
        "uploads": dict(Counter(upload.kind for upload in uploads)),
        "variants": [],
    }
    with tempfile.TemporaryDirectory(prefix="correctness-") as scratch:
        paths = write_uploads(uploads, Path(scratch))
        reference = classify_files(paths, args.bundle, TOP_K, device="cpu")
        truth = [top1(o) == u.label for o, u in zip(reference, uploads, strict=True)]
        results["reference_accuracy_pct"] = 100 * sum(truth) / len(truth)
        results["near_ties"] = sum((margin(o) or 0.0) < TIE_MARGIN for o in reference)
        labels: dict[str, list[str]] = {}
        for variant in VARIANTS:
            if variant.on_cuda and not cuda:
                row = {"name": variant.name, "settings": variant.settings, "result": NO_CUDA}
            elif cuda and not variant.on_cuda:
                continue  # the CPU service is the plumbing check for machines without a GPU
            else:
                row, labels[variant.name] = check_variant(variant, uploads, paths, reference, args)
            results["variants"].append(row)
            print(f"{variant.name}: {row['result']}", flush=True)
            write_json(args.out, results)
        results["graphs_on_vs_off"] = compare_graphs(labels, reference)
    write_json(args.out, results)
    return results


def passed(results: dict) -> bool:
    """Every variant and the graphs comparison ``ok`` or skipped for want of CUDA."""
    rows = [*results["variants"], results["graphs_on_vs_off"]]
    return all(row["result"] in ("ok", NO_CUDA) for row in rows)


def main() -> int:
    exit_on_sigterm()  # check.sh's time limit must stop the server too
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, default=REPO / "models" / "demo")
    parser.add_argument("--images", type=int, default=64, help="distinct uploads, kinds in turn")
    parser.add_argument("--repeats", type=int, default=2, help="times each upload is sent")
    parser.add_argument(
        "--clients",
        type=int,
        default=MIN_CLIENTS,
        help=f"concurrent clients, {MIN_CLIENTS} or more",
    )
    parser.add_argument(
        "--max-batch-size",
        type=int,
        default=Settings.model_fields["max_batch_size"].default,
        help="the service's MAX_BATCH_SIZE (a CPU warms up every size up to it)",
    )
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    args = parser.parse_args()
    if args.clients < MIN_CLIENTS or args.images < 1 or args.repeats < 1:
        parser.error(f"--clients must be at least {MIN_CLIENTS}, --images and --repeats 1 or more")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    results = run(args)
    print(json.dumps(results["graphs_on_vs_off"]), flush=True)
    return 0 if passed(results) else 1


if __name__ == "__main__":
    sys.exit(main())
