"""``python -m benchmarks``: the command line, and the files a run leaves behind.

    python -m benchmarks                                   # what `make bench` runs
    python -m benchmarks --systems service,null --concurrency 1,64,256 --client-processes 4
    python -m benchmarks --variant no-draft:JPEG_DRAFT=false --body both

Writes results.json (every number, rewritten after each system, so a run stopped part-way keeps
what it measured), results.md (the tables and targets) and bench.png (images/s and p99 against
concurrency) into --out.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from benchmarks import harness, machine, plot, report
from benchmarks.bodies import BODY_KINDS, PREDICT_KINDS
from benchmarks.jsonfile import write_json
from benchmarks.servers.process import exit_on_sigterm
from benchmarks.systems import BUILT_IN, RunSettings, System, built_in, service

REPO = Path(__file__).resolve().parent.parent
INPROCESS = "inprocess"
DEFAULT_SYSTEMS = (INPROCESS, "plain", "litserve", "service", "null")


def _pairs(text: str) -> dict[str, str]:
    """``A=1,B=2`` -> ``{"A": "1", "B": "2"}``."""
    pairs = {}
    for item in filter(None, text.split(",")):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {item!r}")
        pairs[key.strip()] = value.strip()
    return pairs


def _variant(text: str) -> tuple[str, dict[str, str]]:
    name, sep, settings = text.partition(":")
    if not sep or not name or name in DEFAULT_SYSTEMS:
        raise argparse.ArgumentTypeError(f"expected NEW-NAME:KEY=VALUE[,KEY=VALUE], got {text!r}")
    return name, _pairs(settings)


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def concurrency_levels(text: str) -> tuple[int, ...]:
    try:
        levels = tuple(sorted({int(c) for c in text.split(",") if c}))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 1,8,32, got {text!r}") from None
    if not levels or levels[0] < 1:
        raise argparse.ArgumentTypeError("concurrency levels must be positive")
    return levels


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Compare resnet-serve with its in-process ceiling, a plain FastAPI endpoint, "
        "LitServe and a null-model ingress ceiling.",
    )
    parser.add_argument(
        "--systems",
        help=f"comma list among {', '.join(DEFAULT_SYSTEMS)} and variant names "
        "(default: all of them and every --variant)",
    )
    parser.add_argument(
        "--concurrency", type=concurrency_levels, default=(1, 8, 32), help="default 1,8,32"
    )
    parser.add_argument(
        "--duration", type=_positive, default=10.0, help="measured s per point (default 10)"
    )
    parser.add_argument(
        "--warmup",
        type=_positive,
        default=3.0,
        help="discarded s before each point; the load processes start within it (default 3)",
    )
    parser.add_argument(
        "--body",
        choices=(*BODY_KINDS, "both", "all"),
        default="multipart",
        help="a body kind; both: multipart and raw (/predict); all: every kind (default multipart)",
    )
    parser.add_argument("--model-dir", type=Path, default=REPO / "models" / "demo")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument(
        "--threads",
        type=_count,
        default=os.cpu_count() or 1,
        help="torch intra-op threads for every system (default: the machine's cores)",
    )
    parser.add_argument(
        "--client-processes", type=_count, default=1, help="load-generator processes (default 1)"
    )
    parser.add_argument("--out", type=Path, help="default runs/bench/<UTC time>")
    parser.add_argument(
        "--service-env",
        type=_pairs,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an extra RESNET_SERVE_* setting for every system (repeatable)",
    )
    parser.add_argument(
        "--variant",
        type=_variant,
        action="append",
        default=[],
        metavar="NAME:KEY=VALUE[,KEY=VALUE]",
        help="an extra service run with these settings on top (repeatable)",
    )
    return parser


def _systems(args: argparse.Namespace, settings: RunSettings) -> tuple[bool, tuple[System, ...]]:
    """Whether to run the in-process ceiling, and the HTTP systems in the order to run them."""
    variants = dict(args.variant)
    every = [*DEFAULT_SYSTEMS[:-1], *variants, DEFAULT_SYSTEMS[-1]]  # variants just before null
    chosen = args.systems.split(",") if args.systems else every
    unknown = set(chosen) - set(every)
    if unknown:
        raise ValueError(f"unknown system(s) {', '.join(sorted(unknown))} in --systems")
    systems = tuple(
        built_in(name, settings) if name in BUILT_IN else service(settings, name, variants[name])
        for name in chosen
        if name != INPROCESS
    )
    return INPROCESS in chosen, systems


def main(argv: list[str] | None = None) -> int:
    exit_on_sigterm()
    parser = build_parser()
    args = parser.parse_args(argv)
    started = datetime.now(UTC)
    out = args.out or REPO / "runs" / "bench" / f"{started:%Y%m%d-%H%M%S}"
    service_env: dict[str, str] = {}
    for pairs in args.service_env:
        service_env |= pairs
    try:
        settings = RunSettings(
            model_dir=args.model_dir.resolve(),
            device=machine.resolve_device(args.device),
            threads=args.threads,
            service_env=service_env,
        )
        inprocess, systems = _systems(args, settings)
    except ValueError as exc:
        parser.error(str(exc))
    bodies = {"both": PREDICT_KINDS, "all": BODY_KINDS}.get(args.body, (args.body,))
    plan = harness.Plan(
        settings=settings,
        inprocess=inprocess,
        systems=systems,
        bodies=bodies,
        concurrency=args.concurrency,
        warmup_s=args.warmup,
        duration_s=args.duration,
        client_processes=args.client_processes,
        logs=out / "logs",
    )
    out.mkdir(parents=True, exist_ok=True)
    header = {
        "started": f"{started:%Y-%m-%d %H:%M} UTC",
        "command": shlex.join(
            ["python", "-m", "benchmarks", *(sys.argv[1:] if argv is None else argv)]
        ),
        "machine": machine.describe(),
        "config": {
            **asdict(settings),
            "model_dir": str(settings.model_dir),
            "systems": {s.name: s.description for s in systems},
            "bodies": bodies,
            "concurrency": args.concurrency,
            "warmup_s": args.warmup,
            "duration_s": args.duration,
            "client_processes": args.client_processes,
        },
    }

    def save(measured: dict) -> dict:
        results = header | measured
        write_json(out / "results.json", results)
        return results

    results = save(harness.run(plan, checkpoint=save))
    markdown = report.render(results)
    (out / "results.md").write_text(markdown + "\n")
    if results["points"]:
        plot.plot(results, out / "bench.png")
    print(f"\n{markdown}\nwritten to {out}")
    return 0
