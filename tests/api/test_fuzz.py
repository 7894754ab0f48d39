"""Fuzzing: the API against its own OpenAPI schema (schemathesis), and the decode path with
mutations of real images (hypothesis). Neither may ever produce a 5xx or an unexpected error."""

from __future__ import annotations

import httpx
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.model.preprocessing import (
    ImageDecodeError,
    ImageTooLargeError,
    PreprocessingSpec,
    UploadDecoder,
)
from app.serving.image_header import read_header
from tests.conftest import ServerProcess, encode, known_image

SEEDS = {
    "jpeg": encode(known_image("square", 1)),
    "png": encode(known_image("triangle", 2), "PNG"),
    "gif": encode(known_image("star", 3).convert("P"), "GIF"),
    "webp": encode(known_image("cross", 4), "WEBP"),
}
DECODE = UploadDecoder(PreprocessingSpec(input_size=32, resize_size=32), max_pixels=4_000_000)


@st.composite
def mutated_images(draw: st.DrawFn) -> bytes:
    """A real image with a few bytes flipped, a slice cut out or its tail dropped."""
    data = bytearray(SEEDS[draw(st.sampled_from(sorted(SEEDS)))])
    for _ in range(draw(st.integers(1, 8))):
        position = draw(st.integers(0, len(data) - 1))
        data[position] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        start = draw(st.integers(0, len(data) - 1))
        del data[start : start + draw(st.integers(1, 64))]
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_images())
def test_mutated_images_decode_or_fail_with_our_own_errors(data: bytes) -> None:
    try:
        read_header(data, DECODE.max_pixels)
        tensor = DECODE(data)
    except (ImageDecodeError, ImageTooLargeError) as exc:
        assert "PIL" not in str(exc)
        return
    assert tensor.shape == (3, 32, 32)


def test_mutated_images_over_http_get_200_or_a_clear_4xx(demo_server: ServerProcess) -> None:
    """The same mutations sent to the server, each as a request of its own.

    A mutation may cut an image down to nothing; that body gets its own clear 400 (`empty_body`).
    The examples are derandomized so that a CI run is reproducible; the in-process test above
    explores new mutations on every run."""
    bodies: list[bytes] = []

    @settings(max_examples=60, deadline=None, database=None, derandomize=True)
    @given(mutated_images())
    def collect(data: bytes) -> None:
        bodies.append(data)

    collect()
    with httpx.Client(base_url=demo_server.url, timeout=30) as client:
        for body in bodies:
            response = client.post(
                "/predict", content=body, headers={"Content-Type": "application/octet-stream"}
            )
            assert response.status_code in (200, 400, 413), response.text
            if response.status_code != 200:
                assert response.json()["error"]["code"] in (
                    "invalid_image",
                    "image_too_large",
                    "empty_body",
                )
    assert demo_server.get("/health/live").status_code == 200


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def test_api_conforms_to_its_schema_and_never_answers_5xx(demo_server: ServerProcess) -> None:
    schema = schemathesis.openapi.from_url(demo_server.url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert any(op.path == "/predict" for op in operations)
    for operation in operations:

        @settings(
            max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        @given(case=operation.as_strategy())
        def call(case: schemathesis.Case) -> None:
            case.call_and_validate(checks=CHECKS, timeout=30)

        call()


def test_the_schema_describes_the_predict_body(demo_server: ServerProcess) -> None:
    body = demo_server.get("/openapi.json").json()["paths"]["/predict"]["post"]["requestBody"]
    assert {"multipart/form-data", "image/*", "application/octet-stream"} <= set(body["content"])
