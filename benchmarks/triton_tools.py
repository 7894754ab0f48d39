"""perf_analyzer's own figures beside the harness's, at the same points, against one server.

    python -m benchmarks.triton_tools --perf-analyzer /path/to/perf_analyzer --concurrency 1,8,32

The harness measures ``POST /predict``; Triton users trust perf_analyzer, which speaks the Open
Inference Protocol over HTTP and gRPC and reports the server's own split of each request (queue,
compute input, compute infer, compute output) from the statistics extension. To set the two side by
side honestly they must load the same server, started once with the harness's ``service`` settings,
with the same image (one a request) at the same concurrency: this does that in one run, point by
point (harness, then perf_analyzer over HTTP, then over gRPC), reading the server's CPU time per
image the way the harness does, and writes results.md and results.json into --out.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from benchmarks import harness, machine, observe
from benchmarks.bodies import multipart
from benchmarks.cli import concurrency_levels
from benchmarks.images import photo_jpegs
from benchmarks.jsonfile import write_json
from benchmarks.loadgen import LoadGenerator, LoadPlan
from benchmarks.perf_analyzer_input import perf_analyzer_input
from benchmarks.report import markdown_table
from benchmarks.servers.process import ServerProcess, exit_on_sigterm, free_port
from benchmarks.systems import RunSettings, System, null_service, service

REPO = Path(__file__).resolve().parent.parent
ENV = "RESNET_SERVE_PERF_ANALYZER"  # as in tests/api/test_perf_analyzer.py
# perf_analyzer's -f CSV columns (microseconds) -> our names
SPLIT = {
    "queue": "Server Queue",
    "input": "Server Compute Input",
    "infer": "Server Compute Infer",
    "output": "Server Compute Output",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.triton_tools",
        description="perf_analyzer (HTTP and gRPC) and the harness against one resnet-serve.",
    )
    parser.add_argument(
        "--perf-analyzer",
        default=os.environ.get(ENV, "perf_analyzer"),
        help=f"command that runs perf_analyzer (default: ${ENV} or perf_analyzer)",
    )
    parser.add_argument(
        "--concurrency", type=concurrency_levels, default=(1, 8, 32), help="default 1,8,32"
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=10.0,
        help="measured s per harness point and per perf_analyzer window (default 10)",
    )
    parser.add_argument(
        "--stability-percentage",
        type=float,
        default=10.0,
        help="perf_analyzer's -s: allowed spread of its last 3 windows (its default 10)",
    )
    parser.add_argument("--warmup", type=float, default=3.0, help="harness warm-up s (default 3)")
    parser.add_argument("--image", type=Path, help="JPEG to send (default: a 500x375 photo-like)")
    parser.add_argument("--model-dir", type=Path, default=REPO / "models" / "demo")
    parser.add_argument(
        "--system",
        choices=("service", "null"),
        default="service",
        help="the real model, or the null one that answers at once (ingress cost; default service)",
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=1,
        help="images per perf_analyzer request (its -b; the harness sends one; default 1)",
    )
    parser.add_argument("--out", type=Path, help="default runs/triton-tools/<UTC time>")
    return parser


def _harness_point(
    server: ServerProcess,
    system: System,
    load: LoadGenerator,
    image: bytes,
    c: int,
    args: argparse.Namespace,
) -> dict:
    """The harness's own measurement (``harness.measure_point``) of ``POST /predict``."""
    plan = LoadPlan(
        url=server.url,
        bodies=(multipart(image),),
        concurrency=c,
        warmup_s=args.warmup,
        duration_s=args.duration,
    )
    point = harness.measure_point(server, system, load, plan)
    return {
        "images_per_s": point["images_per_s"],
        "p50_ms": point["p50_ms"],
        "p99_ms": point["p99_ms"],
        "server_cpu_ms_per_image": point["server_cpu_ms_per_image"],
        "errors": point["errors"],
    }


def _perf_analyzer_point(command: list[str], server: ServerProcess, report: Path) -> dict:
    """Run ``command`` (which writes ``report``); its CSV row, in ms, plus the server's CPU time
    per image over the whole run (perf_analyzer's extra stabilising windows included)."""
    before = observe.sample(server.url, server.group, scrape_batches=True)
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    after = observe.sample(server.url, server.group, scrape_batches=True)
    if done.returncode:  # e.g. no stable measurement in --max-trials windows: keep going
        said = (done.stdout + done.stderr).strip().splitlines()
        print(f"{shlex.join(command)} failed:\n" + "\n".join(said[-3:]), file=sys.stderr)
        return {"errors": {f"exit {done.returncode}": said[-1] if said else ""}}
    with report.open() as file:
        row = next(csv.DictReader(file))
    images = after.batch_count - before.batch_count
    cpu_s = after.cpu_since(before)
    return {
        "images_per_s": float(row["Inferences/Second"]),
        "p50_ms": float(row["p50 latency"]) / 1000,
        "p99_ms": float(row["p99 latency"]) / 1000,
        "server_cpu_ms_per_image": 1000 * cpu_s / images if cpu_s is not None and images else None,
        **{f"{name}_ms": float(row[column]) / 1000 for name, column in SPLIT.items()},
        "errors": {},
    }


def _number(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def render(results: dict) -> str:
    """results.json -> results.md."""
    header = ["tool", "wire", "c", "img/s", "p50 ms", "p99 ms", "server CPU ms/img"]
    header += [f"{name} ms" for name in SPLIT] + ["errors"]
    rows = [
        [p["tool"], p["wire"], str(p["concurrency"])]
        + [_number(p.get(k)) for k in ("images_per_s", "p50_ms", "p99_ms")]
        + [_number(p.get("server_cpu_ms_per_image"), 2)]
        + [_number(p.get(f"{name}_ms"), 2) for name in SPLIT]
        + [", ".join(f"{k}: {v}" for k, v in p["errors"].items()) or "0"]
        for p in results["points"]
    ]
    lines = [
        "# perf_analyzer and the harness against one resnet-serve",
        "",
        f"Machine: {machine.one_line(results['machine'])}.",
        f"Started {results['started']}. Command: `{results['command']}`",
        f"Image: {results['image']}, one a request. Server: `{results['server']}`",
        "",
        *markdown_table(header, rows),
        "img/s, p50 and p99 are each tool's own figures; server CPU is the server's process group "
        "per image answered; queue/input/infer/output are the server's statistics, as perf_analyzer "
        "reports them (mean per request).",
        "",
        "Commands:",
        "",
        *(f"- `{command}`" for command in results["commands"]),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    exit_on_sigterm()
    args = build_parser().parse_args(argv)
    started = datetime.now(UTC)
    out = args.out or REPO / "runs" / "triton-tools" / f"{started:%Y%m%d-%H%M%S}"
    out.mkdir(parents=True, exist_ok=True)
    image = args.image.read_bytes() if args.image else photo_jpegs(1)[0]
    image_name = str(args.image) if args.image else "benchmarks.images.photo_jpegs(1)[0]"
    input_data = out / "input.json"
    input_data.write_text(json.dumps(perf_analyzer_input([image])))
    model_dir = args.model_dir.resolve()
    model = json.loads((model_dir / "model.json").read_text())["name"]
    settings = RunSettings(model_dir, machine.resolve_device("auto"), os.cpu_count() or 1)
    port, grpc_port = free_port(), free_port()
    make = service if args.system == "service" else null_service
    system = make(settings, overrides={"GRPC_PORT": str(grpc_port)})
    env = system.environment(port)
    server_line = " ".join(
        f"{k}={v}" for k, v in sorted(env.items()) if k.startswith(("RESNET_SERVE_", "OMP_"))
    )
    results: dict = {
        "started": f"{started:%Y-%m-%d %H:%M} UTC",
        "command": shlex.join(
            ["python", "-m", "benchmarks.triton_tools", *(sys.argv[1:] if argv is None else argv)]
        ),
        "machine": machine.describe(),
        "image": f"{image_name} ({len(image) / 1000:.1f} KB)",
        "server": f"{server_line} {shlex.join(system.command(port))}",
        "commands": [],
        "points": [],
    }
    perf_analyzer = shlex.split(args.perf_analyzer)
    server = ServerProcess(
        system.command(port), env, port, system.ready_path, out / "logs" / "service.log"
    )
    load = LoadGenerator(1)
    try:
        with server:
            for c in args.concurrency:
                results["commands"].append(
                    f"benchmarks.loadgen: {c} clients POST multipart {server.url}/predict, "
                    f"{args.warmup:g} s warm-up, {args.duration:g} s measured"
                )
                point = {"tool": "harness", "wire": "http /predict", "concurrency": c}
                point |= _harness_point(server, system, load, image, c, args)
                results["points"].append(point)
                print(point, flush=True)
                for wire, target in (("http", port), ("grpc", grpc_port)):
                    report = out / f"perf_analyzer-{wire}-c{c}.csv"
                    command = [*perf_analyzer, "-m", model, "-i", wire]
                    command += ["-u", f"127.0.0.1:{target}", "--input-data", str(input_data)]
                    command += ["--concurrency-range", str(c), "-b", str(args.batch)]
                    command += ["--measurement-interval", str(round(args.duration * 1000))]
                    command += ["-s", f"{args.stability_percentage:g}"]
                    command += ["-f", str(report), "--verbose-csv"]
                    results["commands"].append(shlex.join(command))
                    shown = wire if args.batch == 1 else f"{wire}, {args.batch} images/request"
                    point = {"tool": "perf_analyzer", "wire": shown, "concurrency": c}
                    point |= _perf_analyzer_point(command, server, report)
                    results["points"].append(point)
                    print(point, flush=True)
                    write_json(out / "results.json", results)
    finally:
        load.close()
        write_json(out / "results.json", results)
    markdown = render(results)
    (out / "results.md").write_text(markdown + "\n")
    print(f"\n{markdown}\nwritten to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
