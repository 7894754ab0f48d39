"""The GPU check's CPU-side pieces: the random bundle, the targets and the summary of a partial run."""

from __future__ import annotations

import json
from pathlib import Path

from app.model.bundle import load_bundle
from benchmarks.gpu.bundles import write_random_bundle
from benchmarks.gpu.markdown import render
from benchmarks.gpu.summary import collect, targets


def _best(arch: str, precision: str, mode: str, batch: int, images_per_s: float) -> dict:
    return {
        "arch": arch,
        "precision": precision,
        "mode": mode,
        "batch": batch,
        "images_per_s": images_per_s,
        "ms_per_batch": 1000 * batch / images_per_s,
    }


def _http_point(
    system: str, concurrency: int, images_per_s: float, p99_ms: float, errors: int = 0
) -> dict:
    return {
        "system": system,
        "body": "multipart",
        "concurrency": concurrency,
        "images_per_s": images_per_s,
        "p99_sent_ms": p99_ms,
        "errors": {"503": errors} if errors else {},
    }


def test_random_bundle_is_imagenet_shaped_and_loads(tmp_path: Path) -> None:
    bundle = load_bundle(write_random_bundle(tmp_path / "r18", "resnet18", 64))

    assert bundle.manifest.num_classes == 1000
    assert bundle.manifest.labels[:2] == ["class-000", "class-001"]
    assert bundle.manifest.preprocessing.resize_size == 73  # 64 x 256 / 224
    assert bundle.model.fc.out_features == 1000


def test_targets_take_the_best_mode_and_ignore_the_ingress_ceiling_and_slow_points() -> None:
    sweep = {
        "size": 224,
        "best": [
            _best("resnet50", "bf16", "eager", 256, 21_000.0),
            _best("resnet50", "bf16", "graphs", 128, 27_000.0),
            _best("resnet50", "fp32", "graphs", 256, 40_000.0),  # another precision
            _best("resnet18", "bf16", "graphs", 256, 90_000.0),  # another model
        ],
    }
    http = {
        "points": [
            _http_point("service", 64, 9_000.0, 12.0),
            _http_point("gpu-decode", 256, 14_000.0, 22.0),  # over the p99 limit
            _http_point("gpu-decode", 64, 11_000.0, 9.5),
            _http_point("null", 256, 30_000.0, 5.0),  # the ceiling, not a candidate
        ]
    }

    model, end_to_end = targets(sweep, http)

    assert (model["value"], model["met"], model["where"]) == (27_000.0, True, "graphs, batch 128")
    assert (end_to_end["value"], end_to_end["met"]) == (11_000.0, True)
    assert end_to_end["where"] == "gpu-decode, multipart, c=64, p99 9.5 ms"


def test_a_point_with_any_error_never_carries_the_http_target() -> None:
    http = {
        "points": [
            _http_point("gpu-decode", 256, 14_000.0, 9.0, errors=1),  # fast, but one 503
            _http_point("service", 64, 9_000.0, 12.0),
        ]
    }

    _, end_to_end = targets(None, http)

    assert (end_to_end["value"], end_to_end["met"]) == (9_000.0, False)
    assert end_to_end["where"] == "service, multipart, c=64, p99 12.0 ms"


def test_http_measured_with_no_qualifying_point_is_not_met_rather_than_not_measured() -> None:
    http = {"points": [_http_point("service", 256, 12_000.0, 40.0)]}

    _, end_to_end = targets(None, http)

    assert (end_to_end["value"], end_to_end["met"]) == (None, False)
    assert end_to_end["where"] == "no point without errors within the p99 limit"


def test_a_run_at_another_size_measures_no_model_target() -> None:
    sweep = {"size": 64, "best": [_best("resnet50", "bf16", "graphs", 4, 30_000.0)]}

    model, end_to_end = targets(sweep, None)

    assert (model["value"], model["met"]) == (None, None)
    assert (end_to_end["value"], end_to_end["met"]) == (None, None)


def test_summary_reports_failed_and_timed_out_steps_and_keeps_the_other_numbers(
    tmp_path: Path,
) -> None:
    (tmp_path / "steps.tsv").write_text(
        "tests\t1\t40\t120\nsweep\t0\t80\t150\nhttp\t124\t200\t200\n"
        "precision\tskip\t0\t0\ncorrectness\tno-cuda\t9\t55\n"
    )
    sweep = {
        "device": "NVIDIA H100",
        "size": 224,
        "notes": [],
        "points": [_best("resnet50", "bf16", "graphs", 128, 26_000.0)],
        "best": [_best("resnet50", "bf16", "graphs", 128, 26_000.0)],
        "predict": [_best("resnet50", "bf16", "graphs", 128, 20_000.0) | {"batches_in_flight": 2}],
    }
    (tmp_path / "model_sweep.json").write_text(json.dumps(sweep))

    summary = collect(tmp_path, "full")
    markdown = render(summary)

    assert [s["result"] for s in summary["steps"]] == [
        "failed (exit 1)",
        "ok",
        "timed out",
        "skipped: no time left",
        "skipped: no CUDA",
    ]
    assert summary["targets"][0]["met"] is True
    assert "| resnet50 | bf16 | graphs | 128 | 2 | 20,000 | 6.40 | 4.92 | 77 |" in markdown
    assert "## End to end over HTTP" in markdown and "not measured" in markdown
