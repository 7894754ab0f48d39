"""Every error code the service answers is counted under the reason a dashboard shows for it."""

from __future__ import annotations

import re

from app.serving.metrics import REJECTION_REASONS
from tests.conftest import REPO

RAISED_CODE = re.compile(r'ApiError\(\s*\d+,\s*"(\w+)"')


def test_every_error_code_in_the_app_has_a_rejection_reason() -> None:
    sources = (path.read_text() for path in (REPO / "app").rglob("*.py"))
    raised = {code for source in sources for code in RAISED_CODE.findall(source)}
    assert {"overloaded", "explain_busy", "model_not_found", "headers_too_large"} <= raised
    assert raised - set(REJECTION_REASONS) == set()
