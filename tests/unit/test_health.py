"""The health report is the body /health/ready answers, and its status decides liveness and
readiness for every protocol's health routes."""

from __future__ import annotations

import pytest

from app.wire.rest import HealthResponse


def _report(status: str) -> HealthResponse:
    return HealthResponse(
        status=status, max_batch_size=8, queue_depth=0, saturation=0.0, uptime_s=1.0
    )


@pytest.mark.parametrize(
    ("status", "live", "ready"),
    [
        ("starting", True, False),
        ("ready", True, True),
        ("draining", True, False),
        ("failed", False, False),
        ("stuck", False, False),
    ],
)
def test_only_a_failed_or_stuck_server_is_not_live_and_only_a_ready_one_is_ready(
    status: str, live: bool, ready: bool
) -> None:
    report = _report(status)
    assert (report.live, report.ready) == (live, ready)


def test_live_and_ready_are_not_part_of_the_body() -> None:
    assert set(_report("ready").model_dump()) == set(HealthResponse.model_fields)
    assert "ready" not in HealthResponse.model_json_schema()["properties"]
