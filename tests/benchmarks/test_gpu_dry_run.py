"""The GPU check cannot break unnoticed on a machine without a GPU: every module of
benchmarks/gpu imports, and the whole script runs (--quick) with every step ending ok, or
skipped for want of CUDA where it needs CUDA."""

from __future__ import annotations

import importlib
import json
import pkgutil
import subprocess
from pathlib import Path

import benchmarks.gpu
from benchmarks.gpu.summary import steps
from benchmarks.gpu.versions import locked_versions

REPO = Path(__file__).resolve().parents[2]
STEPS = ["imports", "tests", "sweep", "bundle", "http", "correctness", "precision"]
PASSING = {"ok", "skipped: no CUDA"}


def test_every_module_of_the_gpu_check_imports() -> None:
    names = [m.name for m in pkgutil.iter_modules(benchmarks.gpu.__path__, "benchmarks.gpu.")]

    for name in names:
        importlib.import_module(name)

    assert {"benchmarks.gpu.model_sweep", "benchmarks.gpu.correctness"} <= set(names)


def test_the_quick_dry_run_ends_every_step_ok_or_skipped_for_want_of_cuda(tmp_path: Path) -> None:
    done = subprocess.run(
        ["bash", "benchmarks/gpu/check.sh", str(tmp_path), "--quick"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )

    results = {step["name"]: step["result"] for step in steps(tmp_path / "steps.tsv")}
    failed = {name: result for name, result in results.items() if result not in PASSING}
    logs = {name: (tmp_path / f"{name}.log").read_text()[-2000:] for name in failed}
    assert (list(results), failed) == (STEPS, {}), logs or done.stdout[-3000:]
    assert done.returncode == 0, done.stdout[-3000:]
    summary = json.loads((tmp_path / "gpu_check.json").read_text())
    variants = summary["correctness"]["variants"]
    assert variants and all(v["result"] in PASSING for v in variants)
    assert summary["machine"]["lock"] == locked_versions()
