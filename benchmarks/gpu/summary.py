"""Merge what each step of ``check.sh`` left in its folder into gpu_check.json and gpu_check.md.

A step that failed or timed out leaves its file missing or stale: that part of the summary says so
and the rest is reported as usual, so one broken piece never hides the other pieces' numbers.

    python -m benchmarks.gpu.summary OUT_DIR --profile full
"""

from __future__ import annotations

import argparse
import json
import xml.etree.ElementTree as ElementTree
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.gpu.markdown import render

TIMED_OUT = {124, 137}  # timeout's own exit status, and SIGKILL after its grace period
# check.sh's steps.tsv status for a step it did not run, or whose run only checked the plumbing
SKIPPED = {"skip": "skipped: no time left", "no-cuda": "skipped: no CUDA"}
MODEL_TARGET = ("resnet50", "bf16", 224, 25_000.0)  # arch, precision, px, images/s at best batch
HTTP_TARGET_IMAGES_PER_S = 10_000.0
HTTP_TARGET_P99_MS = 15.0
INGRESS_SYSTEM = "null"  # the harness's null-model server: a ceiling, not a candidate


def _json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _result(rc: str) -> str:
    if rc in SKIPPED:
        return SKIPPED[rc]
    if int(rc) == 0:
        return "ok"
    return "timed out" if int(rc) in TIMED_OUT else f"failed (exit {rc})"


def steps(path: Path) -> list[dict]:
    """``steps.tsv`` (name, exit status, seconds, limit) as dicts with a readable result."""
    if not path.is_file():
        return []
    rows = [line.split("\t") for line in path.read_text().splitlines() if line]
    return [
        {
            "name": name,
            "rc": rc,
            "seconds": int(seconds),
            "limit_s": int(limit),
            "result": _result(rc),
        }
        for name, rc, seconds, limit in rows
    ]


def tests(path: Path) -> dict | None:
    """Counts and failing test ids from pytest's JUnit XML."""
    try:
        root = ElementTree.parse(path).getroot()
    except (OSError, ElementTree.ParseError):
        return None
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    counts = {key: int(suite.get(key, 0)) for key in ("tests", "failures", "errors", "skipped")}
    failing = [
        f"{case.get('classname')}::{case.get('name')}"
        for case in suite.iter("testcase")
        if case.find("failure") is not None or case.find("error") is not None
    ]
    return counts | {"failing": failing}


def _target(name: str, value: float | None, goal: float, where: str, measured: bool) -> dict:
    """``met`` is None where nothing was measured, False where nothing measured qualified."""
    met = (value is not None and value >= goal) if measured else None
    return {"name": name, "value": value, "goal": goal, "met": met, "where": where}


def qualifies(point: dict) -> bool:
    """A served point can carry the HTTP target: no failed request, and p99 within the limit
    over every request sent (``p99_sent_ms``: a failure counts as the client's timeout)."""
    p99 = point.get("p99_sent_ms")
    errors = sum(point["errors"].values())
    return errors == 0 and p99 is not None and p99 <= HTTP_TARGET_P99_MS


def targets(sweep: dict | None, http: dict | None) -> list[dict]:
    """The issue's two GPU targets, measured where this run measured them."""
    arch, precision, size, goal = MODEL_TARGET
    best = [
        p
        for p in (sweep or {}).get("best", [])
        if (p["arch"], p["precision"]) == (arch, precision) and sweep["size"] == size
    ]
    top = max(best, key=lambda p: p["images_per_s"], default=None)
    model = _target(
        f"{arch} {size} px {precision} model-only, best batch",
        top and top["images_per_s"],
        goal,
        f"{top['mode']}, batch {top['batch']}" if top else "not measured",
        measured=bool(best),
    )
    served = [p for p in (http or {}).get("points", []) if p["system"] != INGRESS_SYSTEM]
    fastest = max(filter(qualifies, served), key=lambda p: p["images_per_s"], default=None)
    end_to_end = _target(
        f"HTTP, one JPEG per request, best point with no error and p99 <= "
        f"{HTTP_TARGET_P99_MS:g} ms over every request sent",
        fastest and fastest["images_per_s"],
        HTTP_TARGET_IMAGES_PER_S,
        (
            f"{fastest['system']}, {fastest['body']}, c={fastest['concurrency']}, "
            f"p99 {fastest['p99_sent_ms']:.1f} ms"
            if fastest
            else "no point without errors within the p99 limit"
            if served
            else "not measured"
        ),
        measured=bool(served),
    )
    return [model, end_to_end]


def collect(out: Path, profile: str) -> dict:
    """Everything the steps left in ``out``, and the targets computed from it."""
    sweep = _json(out / "model_sweep.json")
    http = _json(out / "http" / "results.json")
    return {
        "profile": profile,
        "generated": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "machine": _json(out / "versions.json"),
        "steps": steps(out / "steps.tsv"),
        "tests": tests(out / "tests.xml"),
        "targets": targets(sweep, http),
        "model_sweep": sweep,
        "precision": _json(out / "precision.json"),
        "correctness": _json(out / "correctness.json"),
        "http": http,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="the folder check.sh wrote into")
    parser.add_argument("--profile", choices=("full", "quick"), default="full")
    args = parser.parse_args()
    summary = collect(args.out, args.profile)
    (args.out / "gpu_check.json").write_text(json.dumps(summary, indent=2) + "\n")
    markdown = render(summary)
    (args.out / "gpu_check.md").write_text(markdown + "\n")
    print(markdown)


if __name__ == "__main__":
    main()
