"""Every error code the service answers is counted under the reason a dashboard shows for it."""

from __future__ import annotations

import ast

import pytest

from app.serving.metrics import REJECTION_LABELS, REJECTION_REASONS, ServiceMetrics
from tests.conftest import REPO

REJECTED = "resnet_serve_rejected_requests_total"
REFUSED = "resnet_serve_admission_refused_total"


def _counts(metrics: ServiceMetrics) -> tuple[dict[str, float], float]:
    """What /metrics would show now: rejections by reason, and admission refusals."""
    registry = metrics.registry
    rejected = {r: registry.get_sample_value(REJECTED, {"reason": r}) for r in REJECTION_LABELS}
    return rejected, registry.get_sample_value(REFUSED)


@pytest.mark.parametrize(
    ("code", "reason", "refused"),
    [
        ("overloaded", "overloaded", 1),  # the one code that is also an admission refusal
        ("queue_full", "overloaded", 0),
        ("write_timeout", "slow_reader", 0),
        ("upload_timeout", "deadline", 0),
        ("decode_budget_exceeded", "too_large", 0),
        ("invalid_image", "bad_image", 0),
        ("shutting_down", "draining", 0),
        ("inference_failed", "internal", 0),
        ("a_code_nobody_mapped", "bad_request", 0),  # the default, never a lost count
    ],
)
def test_a_rejection_counts_once_under_its_reason_and_nowhere_else(
    code: str, reason: str, refused: int
) -> None:
    metrics = ServiceMetrics()
    before, refused_before = _counts(metrics)
    assert set(before.values()) == {0.0}  # every reason exported at zero from the start

    metrics.count_rejection(code)

    after, refused_after = _counts(metrics)
    assert {r: after[r] - before[r] for r in after} == {r: float(r == reason) for r in after}
    assert refused_after - refused_before == refused


def _raised_codes() -> dict[str, list[str]]:
    """Every ``ApiError(status, code, ...)`` in app/: the literal codes, and where a code is not a
    literal (which this check cannot follow)."""
    codes: dict[str, list[str]] = {"literal": [], "computed": []}
    for path in (REPO / "app").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not (isinstance(node, ast.Call) and getattr(node.func, "id", "") == "ApiError"):
                continue
            code = node.args[1] if len(node.args) > 1 else None
            if isinstance(code, ast.Constant) and isinstance(code.value, str):
                codes["literal"].append(code.value)
            else:
                codes["computed"].append(str(path.relative_to(REPO)))
    return codes


def test_every_error_code_in_the_app_has_a_rejection_reason() -> None:
    codes = _raised_codes()
    raised = set(codes["literal"])
    assert {"overloaded", "explain_busy", "model_not_found", "headers_too_large"} <= raised
    assert raised - set(REJECTION_REASONS) == set()
    # The one computed code: FastAPI's own 404/405, answered without counting a rejection.
    assert codes["computed"] == ["app/edge/http_errors.py"]
