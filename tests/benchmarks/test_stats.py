"""The numbers the benchmark report is built from: images/s, percentiles, errors, merging."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from starlette.requests import Request

from benchmarks.bodies import encode
from benchmarks.stats import LoadResult


def test_summary_reports_successes_per_second_and_their_percentiles() -> None:
    result = LoadResult(
        window_s=2.0,
        latencies_s=[ms / 1000 for ms in range(1, 101)],
        statuses=Counter({"200": 100, "503": 7, "conn_error": 2}),
    )

    summary = result.summary()

    assert summary["images_per_s"] == 50.0
    assert summary["requests"] == 109
    assert summary["errors"] == {"503": 7, "conn_error": 2}
    assert summary["p50_ms"] == pytest.approx(50.5)
    assert summary["p90_ms"] == pytest.approx(90.1)
    assert summary["p99_ms"] == pytest.approx(99.01)
    assert summary["max_ms"] == pytest.approx(100.0)


def test_p99_over_every_request_sent_counts_a_failure_as_the_timeout() -> None:
    answered = [ms / 1000 for ms in range(1, 99)]  # 98 answers of 1..98 ms
    result = LoadResult(
        window_s=1.0,
        latencies_s=answered,
        statuses=Counter({"200": 98, "503": 2}),
        sent_latencies_s=[*answered, 60.0, 60.0],  # two fast 503s, counted as a 60 s timeout
    )

    summary = result.summary()

    assert summary["p99_ms"] == pytest.approx(97.03)  # the successes alone flatter
    assert summary["p99_sent_ms"] == pytest.approx(60_000.0)


def test_summary_without_a_success_has_no_latency() -> None:
    summary = LoadResult(window_s=1.0, statuses=Counter({"conn_error": 5})).summary()

    assert summary["images_per_s"] == 0.0
    assert summary["p50_ms"] is None
    assert summary["max_ms"] is None


def test_merge_adds_the_processes_of_one_window() -> None:
    first = LoadResult(1.0, [0.010, 0.020], Counter({"200": 2}), 0.5, [0.020, 0.010])
    second = LoadResult(1.0, [0.030], Counter({"200": 1, "504": 1}), 0.25, [60.0])

    merged = LoadResult.merge([first, second])

    assert merged.window_s == 1.0
    assert sorted(merged.latencies_s) == [0.010, 0.020, 0.030]
    assert merged.statuses == Counter({"200": 3, "504": 1})
    assert merged.client_cpu_s == 0.75
    assert sorted(merged.sent_latencies_s) == [0.010, 0.020, 60.0]
    assert merged.summary()["images_per_s"] == 3.0


def test_pre_encoded_multipart_body_is_one_file_part_to_starlette() -> None:
    image = b"\xff\xd8 not really a jpeg \r\n--boundary-lookalike \xff\xd9"
    (body,) = encode([image], "multipart")
    chunks = [body.data]

    async def receive() -> dict:
        return {"type": "http.request", "body": chunks.pop() if chunks else b"", "more_body": False}

    async def parse() -> tuple[str, bytes]:
        scope = {
            "type": "http",
            "method": "POST",
            "headers": [(b"content-type", body.content_type.encode())],
        }
        async with Request(scope, receive).form() as form:
            upload = form["file"]
            return upload.filename, await upload.read()

    assert asyncio.run(parse()) == ("photo.jpg", image)
