"""The health report is answered as it is: its fields are exactly those /health documents."""

from __future__ import annotations

import dataclasses

from app.serving.health import HealthReport
from app.wire.rest import HealthResponse


def test_health_report_has_the_documented_fields_in_order() -> None:
    assert [field.name for field in dataclasses.fields(HealthReport)] == list(
        HealthResponse.model_fields
    )
