"""The HTTP edge routes the door by the path the app will see, however the target is spelt."""

from __future__ import annotations

import pytest

from app.edge.http_protocol import request_path


@pytest.mark.parametrize(
    ("target", "path"),
    [
        (b"/predict", b"/predict"),
        (b"/predict?top_k=3", b"/predict"),
        (b"/%70redict", b"/predict"),  # percent-escaped, as uvicorn decodes it
        (b"http://example:8000/predict", b"/predict"),  # absolute form
        (b"/v2/models/demo/infer", b"/v2/models/demo/infer"),
        (b"\xff not a url", b""),
    ],
)
def test_request_path_is_the_path_the_app_routes(target: bytes, path: bytes) -> None:
    assert request_path(target) == path
