"""The correctness step's pieces: its uploads, its comparison and tolerance, its report, and the
versions line that says which torch the numbers came from."""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from app.cli.prediction import Outcome
from app.client.models import ImageResult, ScoredLabel
from app.model.preprocessing import decode_image
from benchmarks.gpu import correctness
from benchmarks.gpu.correctness import TIE_MARGIN, compare_graphs, mismatches
from benchmarks.gpu.markdown import render
from benchmarks.gpu.mixed_images import KINDS, mixed_uploads
from benchmarks.gpu.summary import collect
from benchmarks.gpu.versions import differences, locked_versions
from benchmarks.jsonfile import write_json


def _answer(top: str, top_score: float, runner_up: str, runner_up_score: float) -> Outcome:
    predictions = (ScoredLabel(top, 0, top_score), ScoredLabel(runner_up, 1, runner_up_score))
    return Outcome(Path("x"), ImageResult(predictions, 1, 0.0, 1.0))


def test_uploads_meet_every_class_in_every_kind_at_their_sizes() -> None:
    uploads = mixed_uploads(32)

    assert Counter(u.kind for u in uploads) == dict.fromkeys(KINDS, 8)
    assert all(len({u.label for u in uploads if u.kind == kind}) == 8 for kind in KINDS)
    sizes = {u.kind: Image.open(io.BytesIO(u.data)).size for u in uploads}
    assert sizes["jpeg-4000x3000"] == (4000, 3000)
    assert sizes["jpeg-exif-rotated"] == (500, 375)  # stored on its side


def test_an_exif_rotated_upload_decodes_upright() -> None:
    rotated = next(u for u in mixed_uploads(4) if u.kind == "jpeg-exif-rotated")

    assert decode_image(rotated.data, 10**8).size == (375, 500)


def test_a_flip_counts_against_the_goal_unless_the_cpu_path_was_a_near_tie() -> None:
    uploads = mixed_uploads(2)
    reference = [_answer("star", 0.99, "cross", 0.01), _answer("ring", 0.55, "circle", 0.45)]
    served = [
        _answer("cross", 0.6, "star", 0.4),  # the CPU path was sure: a real mismatch
        _answer("circle", 0.5, "ring", 0.5),  # a near tie on the CPU path: tolerated
        _answer("star", 0.99, "cross", 0.01),  # the first upload again, right this time
        Outcome(Path("x"), code="overloaded"),  # an error, counted apart from mismatches
    ]

    found = mismatches(uploads, reference, served)

    assert [(m["image"], m["served"], m["tolerated"]) for m in found] == [
        (uploads[0].name, "cross", False),
        (uploads[1].name, "circle", True),
    ]
    assert found[1]["reference_margin"] < TIE_MARGIN


def test_graphs_on_and_off_differing_on_a_confident_answer_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(correctness.torch.cuda, "is_available", lambda: True)
    reference = [_answer("star", 0.99, "cross", 0.01), _answer("ring", 0.55, "circle", 0.45)]
    labels = {"cuda": ["star", "ring", "star"], "cuda-no-graphs": ["cross", "circle", "star"]}

    compared = compare_graphs(labels, reference)

    assert compared == {"result": "1 differ", "differing": 2, "untolerated": 1}


def test_versions_name_each_locked_package_the_machine_has_at_another_release() -> None:
    pins = {"torch": "2.15.0", "torchvision": "0.29.2"}
    measured = {"torch": "2.11.0+cu130", "torchvision": "0.29.2+cu130"}

    assert differences(measured, pins) == ["torch 2.11.0+cu130 (lock: 2.15.0)"]
    assert set(locked_versions()) == {"torch", "torchvision"}


def test_report_says_the_torch_measured_is_not_the_locks_and_lists_mismatches(
    tmp_path: Path,
) -> None:
    write_json(
        tmp_path / "versions.json",
        {
            **dict.fromkeys(("gpu", "cpu", "cores", "python", "fastapi", "uvicorn", "aiohttp")),
            **{"torch": "2.11.0+cu130", "torchvision": "0.26.0", "cuda": "13.0", "cudnn": 91000},
            "differs_from_lock": ["torch 2.11.0+cu130 (lock: 2.15.0)"],
        },
    )
    mismatch = {
        "image": "001-jpeg-4000x3000-square.jpg",
        "served": "star",
        "expected": "square",
        "reference_margin": 0.9,
        "tolerated": False,
    }
    write_json(
        tmp_path / "correctness.json",
        {
            "reference": "the CPU path",
            "clients": 8,
            "repeats": 2,
            "tie_margin": TIE_MARGIN,
            "uploads": {"jpeg-4000x3000": 1},
            "variants": [
                {
                    "name": "cuda-nvjpeg",
                    "settings": {"GPU_DECODE": "true"},
                    "result": "1 mismatches",
                }
                | {"requests": 2, "errors": {}, "mismatches": [mismatch], "memory": None},
            ],
            "graphs_on_vs_off": {"result": "ok", "differing": 0},
        },
    )

    markdown = render(collect(tmp_path, "full"))

    assert "not the lock's:** torch 2.11.0+cu130 (lock: 2.15.0)" in markdown
    assert "| cuda-nvjpeg | GPU_DECODE=true | 1 mismatches | 2 | 0 | 1 |" in markdown
    assert "001-jpeg-4000x3000-square.jpg served star, CPU path square (margin 0.900)" in markdown
    assert "CUDA graphs on against off, same requests: ok." in markdown
