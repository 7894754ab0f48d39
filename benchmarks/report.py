"""results.json -> results.md: the tables, the ceilings and the targets of one run."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from benchmarks.machine import one_line

TARGET_CEILING = 0.95  # service at the highest concurrency / best in-process images/s
TARGET_PEERS = 1.2  # service / best peer, both at the highest concurrency
TARGET_OVERHEAD_MS = 1.5  # service p50 at c=1 minus in-process p50 at batch 1
PEERS = ("plain", "litserve")


def _number(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _errors(errors: dict[str, int]) -> str:
    return ", ".join(f"{status}: {n}" for status, n in errors.items()) or "0"


def markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table, then a blank line (shared with the GPU check's report)."""
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(row) + " |" for row in rows),
        "",
    ]


def _point(results: dict, system: str, body: str, concurrency: int) -> dict | None:
    for point in results["points"]:
        if (point["system"], point["body"], point["concurrency"]) == (system, body, concurrency):
            return point
    return None


def _systems(results: dict, body: str) -> list[str]:
    return list(dict.fromkeys(p["system"] for p in results["points"] if p["body"] == body))


def _summary_table(results: dict, body: str, levels: list[int]) -> list[str]:
    header = ["system"]
    for c in levels:
        header += [f"c={c} img/s", f"c={c} p50 ms", f"c={c} p99 ms"]
    header += ["mean batch (" + " / ".join(f"c={c}" for c in levels) + ")", "errors"]
    rows = []
    for system in _systems(results, body):
        points = [_point(results, system, body, c) or {} for c in levels]
        row = [system]
        for p in points:
            row += [
                _number(p.get("images_per_s")),
                _number(p.get("p50_ms")),
                _number(p.get("p99_ms")),
            ]
        row.append(" / ".join(_number(p.get("mean_batch"), 2) for p in points))
        errors: Counter[str] = Counter()
        for p in points:
            errors.update(p.get("errors", {}))
        row.append(_errors(dict(sorted(errors.items()))))
        rows.append(row)
    return markdown_table(header, rows)


def _details_table(results: dict, body: str) -> list[str]:
    header = ["system", "c", "img/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "mean batch"]
    header += ["server CPU ms/img", "client CPU s", "errors"]
    rows = [
        [
            p["system"],
            str(p["concurrency"]),
            _number(p["images_per_s"]),
            *(_number(p[k]) for k in ("p50_ms", "p90_ms", "p99_ms", "max_ms")),
            _number(p["mean_batch"], 2),
            _number(p["server_cpu_ms_per_image"], 2),
            _number(p["client_cpu_s"], 2),
            _errors(p["errors"]),
        ]
        for p in results["points"]
        if p["body"] == body
    ]
    return markdown_table(header, rows)


def _inprocess(ceiling: dict) -> list[str]:
    batch_1 = ceiling["batch_1"]
    sweep = ceiling["sweep_images_per_s"]
    return [
        "## In-process ceiling",
        "",
        f"Same bundle, preprocessing and forward pass, no HTTP, {ceiling['threads']} torch "
        f"threads on {ceiling['device']} at {ceiling['precision']}. Batch 1 (decode, preprocess, forward, softmax, "
        f"serially): **{batch_1['images_per_s']:.1f} images/s**, p50 {batch_1['p50_ms']:.2f} ms, "
        f"p99 {batch_1['p99_ms']:.2f} ms. Batch sweep (decode the batch serially, one forward):",
        "",
        *markdown_table(["batch", *sweep], [["img/s", *(_number(v) for v in sweep.values())]]),
        f"Best: batch {ceiling['best_batch']}, **{ceiling['best_images_per_s']:.1f} images/s**.",
        "",
    ]


def _ingress(results: dict, cores: int) -> list[str]:
    points = [p for p in results["points"] if p["system"] == "null"]
    if not points:
        return []
    rows = [
        [
            p["body"],
            str(p["concurrency"]),
            _number(p["images_per_s"]),
            _number(p["server_cpu_ms_per_image"], 2),
            _number(
                p["server_cpu_s"] / p["window_s"] if p["server_cpu_s"] is not None else None, 2
            ),
            _number(1000 * cores / p["images_per_s"] if p["images_per_s"] else None, 2),
        ]
        for p in points
    ]
    header = ["body", "c", "img/s", "server CPU ms/img", "server cores busy"]
    return [
        "## Ingress ceiling (null model)",
        "",
        "The service with a model that answers at once: HTTP, parsing, JPEG decoding, "
        "preprocessing, batching and the JSON answer, nothing else. `server CPU ms/img` is the "
        "server's measured CPU time per image (ms of one core); the last column assumes instead "
        f"that all {cores} cores of this machine were busy serving (an upper bound: the load "
        "generator shares them).",
        "",
        *markdown_table([*header, f"{cores} cores x ms / img"], rows),
        "HTTP + decode cost per image per core = server CPU ms/img at the highest concurrency: a "
        "GPU host that must serve N images/s needs about N x that / 1000 cores for ingress alone.",
        "",
    ]


@dataclass(frozen=True)
class Target:
    """One goal the issue set for the service, with this run's value."""

    name: str
    value: float | None  # None: the run did not measure what it needs
    goal: float
    at_least: bool  # the goal is a floor (>=), else a ceiling (<=)

    @property
    def met(self) -> str:
        if self.value is None:
            return "n/a"
        return "yes" if (self.value >= self.goal) == self.at_least else "no"


def targets(results: dict, body: str) -> list[Target]:
    """The three targets for ``body``, computed from this run."""
    top = max(results["config"]["concurrency"])
    service = _point(results, "service", body, top)
    c1 = _point(results, "service", body, 1)
    ceiling = results.get("inprocess")
    best_peer = max(
        (p["images_per_s"] for name in PEERS if (p := _point(results, name, body, top))),
        default=0.0,
    )
    return [
        Target(
            f"service c={top} / best in-process",
            service["images_per_s"] / ceiling["best_images_per_s"] if service and ceiling else None,
            TARGET_CEILING,
            at_least=True,
        ),
        Target(
            f"service c={top} / best peer c={top}",
            service["images_per_s"] / best_peer if service and best_peer else None,
            TARGET_PEERS,
            at_least=True,
        ),
        Target(
            "service c=1 p50 - in-process batch-1 p50 (ms)",
            c1["p50_ms"] - ceiling["batch_1"]["p50_ms"]
            if c1 and c1["p50_ms"] and ceiling
            else None,
            TARGET_OVERHEAD_MS,
            at_least=False,
        ),
    ]


def _targets(results: dict, bodies: list[str]) -> list[str]:
    rows = [
        [
            f"{t.name} ({body})",
            _number(t.value, 2),
            (">= " if t.at_least else "<= ") + f"{t.goal:g}",
            t.met,
        ]
        for body in bodies
        for t in targets(results, body)
    ]
    return ["## Targets", "", *markdown_table(["target", "value", "goal", "met"], rows)]


def render(results: dict) -> str:
    """The whole report as Markdown."""
    config = results["config"]
    levels = config["concurrency"]
    bodies = [b for b in config["bodies"] if any(p["body"] == b for p in results["points"])]
    lines = [
        f"# Benchmark run {results['started']}",
        "",
        f"Machine: {one_line(results['machine'])}.",
        "",
        f"Command: `{results['command']}`",
        "",
        f"Bundle `{config['model_dir']}` on {config['device']}, {config['threads']} torch threads "
        f"for every system; {config['warmup_s']:g} s warm-up and {config['duration_s']:g} s measured "
        f"per point; {config['client_processes']} load process(es); {results['images']['count']} "
        f"photo-like 500x375 JPEGs at quality 90, mean {results['images']['mean_bytes'] / 1000:.1f} "
        "KB, one per request. Servers and load generator share this machine's cores.",
        "",
        *(_targets(results, bodies) if results["points"] else []),
    ]
    for body in bodies:
        lines += [f"## HTTP, {body} bodies", "", *_summary_table(results, body, levels)]
        lines += [f"### Every point, {body}", "", *_details_table(results, body)]
    if results.get("inprocess"):
        lines += _inprocess(results["inprocess"])
    lines += _ingress(results, results["machine"]["cores"])
    return "\n".join(lines)
