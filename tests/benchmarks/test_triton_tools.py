"""benchmarks.triton_tools: its command line and its report, so a move of what it imports fails here
rather than on the day perf_analyzer is run."""

from __future__ import annotations

from benchmarks import machine
from benchmarks.triton_tools import build_parser, render


def test_the_command_line_takes_the_documented_options() -> None:
    args = build_parser().parse_args(
        ["--perf-analyzer", "/opt/pa", "--concurrency", "8,1", "--system", "null", "--batch", "8"]
    )
    assert (args.perf_analyzer, args.concurrency, args.system, args.batch) == (
        "/opt/pa",
        (1, 8),
        "null",
        8,
    )


def test_the_report_puts_both_tools_side_by_side() -> None:
    results = {
        "started": "2026-12-07 02:49 UTC",
        "command": "python -m benchmarks.triton_tools",
        "machine": machine.describe(),
        "image": "photo (55.4 KB)",
        "server": "resnet-serve serve",
        "commands": ["perf_analyzer -m demo -i grpc"],
        "points": [
            {
                "tool": "harness",
                "wire": "http /predict",
                "concurrency": 1,
                "images_per_s": 79.2,
                "p50_ms": 11.8,
                "p99_ms": 31.4,
                "server_cpu_ms_per_image": 23.69,
                "errors": {},
            },
            {
                "tool": "perf_analyzer",
                "wire": "grpc",
                "concurrency": 1,
                "images_per_s": 84.8,
                "p50_ms": 11.1,
                "p99_ms": 26.8,
                "server_cpu_ms_per_image": 22.39,
                "queue_ms": 0.06,
                "input_ms": 1.77,
                "infer_ms": 8.57,
                "output_ms": 0.08,
                "errors": {},
            },
            {
                "tool": "perf_analyzer",
                "wire": "http",
                "concurrency": 8,
                "errors": {"exit 2": "Failed to obtain stable measurement."},
            },
        ],
    }
    report = render(results)
    assert (
        "| harness | http /predict | 1 | 79.2 | 11.8 | 31.4 | 23.69 | - | - | - | - | 0 |" in report
    )
    assert (
        "| perf_analyzer | grpc | 1 | 84.8 | 11.1 | 26.8 | 22.39 | 0.06 | 1.77 | 8.57 | 0.08 | 0 |"
        in report
    )
    assert "exit 2: Failed to obtain stable measurement." in report
    assert "- `perf_analyzer -m demo -i grpc`" in report
