"""The OpenAPI document is complete: every JSON answer has a schema, every successful one an
example, request bodies say what they take, and /v2 advertises only the protocol's error shape.

Built in-process, with no server: ``demo_app().openapi()``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest

from tests.conftest import demo_app

V2_INFER = ("/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer")
RAW_IMAGE = {"multipart/form-data", "image/*", "application/octet-stream"}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    with demo_app() as app:
        return app.openapi()


def _operations(document: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            yield f"{method.upper()} {path}", operation


def _responses(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(operation, status, JSON media type) for every documented JSON answer."""
    for name, operation in _operations(document):
        for status, response in operation["responses"].items():
            if "application/json" in response.get("content", {}):
                yield name, status, response["content"]["application/json"]


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in schema:
        return document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def test_every_json_answer_has_a_schema(document: dict[str, Any]) -> None:
    missing = [
        f"{name} {status}"
        for name, status, media in _responses(document)
        if not media.get("schema")
    ]
    assert missing == []


def test_every_successful_json_answer_has_an_example(document: dict[str, Any]) -> None:
    successes = [
        (name, media) for name, status, media in _responses(document) if status.startswith("2")
    ]
    assert len(successes) >= 10  # /predict, /explain, /health, /model, /v2 metadata, infer, ...
    missing = [
        name for name, media in successes if not _resolve(document, media["schema"]).get("examples")
    ]
    assert missing == []


def test_every_example_fits_its_schema(document: dict[str, Any]) -> None:
    """Examples of answers (components, error media types) and of request bodies alike."""
    examples = [
        (example, schema)
        for schema in document["components"]["schemas"].values()
        for example in schema.get("examples", [])
    ]
    examples += [
        (media["example"], media["schema"])
        for *_, media in _responses(document)
        if "example" in media
    ]
    for _, operation in _operations(document):
        for media in operation.get("requestBody", {}).get("content", {}).values():
            examples += [
                (example, media["schema"]) for example in media["schema"].get("examples", [])
            ]
    assert len(examples) >= 15
    for example, schema in examples:
        jsonschema.Draft202012Validator({**schema, "components": document["components"]}).validate(
            example
        )


@pytest.mark.parametrize("path", ["/predict", "/explain"])
def test_predict_and_explain_take_multipart_or_a_raw_image(
    document: dict[str, Any], path: str
) -> None:
    body = document["paths"][path]["post"]["requestBody"]
    assert body["required"] and set(body["content"]) >= RAW_IMAGE
    assert all(media.get("schema") for media in body["content"].values())


@pytest.mark.parametrize("path", V2_INFER)
def test_v2_infer_takes_and_answers_json_with_a_schema_or_binary_data(
    document: dict[str, Any], path: str
) -> None:
    operation = document["paths"][path]["post"]
    body = operation["requestBody"]["content"]
    assert set(body) == {"application/json", "application/octet-stream"}
    request = body["application/json"]["schema"]
    assert request["properties"]["inputs"]["items"]["properties"]["datatype"]["enum"] == [
        "BYTES",
        "UINT8",
        "FP32",
    ]
    answer = operation["responses"]["200"]["content"]
    assert answer["application/json"]["schema"] == {"$ref": "#/components/schemas/V2InferResponse"}
    assert answer["application/octet-stream"]["schema"]["format"] == "binary"


def test_v2_routes_advertise_only_the_protocols_error_shape(document: dict[str, Any]) -> None:
    """Not FastAPI's ``HTTPValidationError`` either: /v2 answers a bad parameter as ``{"error"}``."""
    v2 = [(name, op) for name, op in _operations(document) if " /v2" in name]
    assert len(v2) > 10
    for name, operation in v2:
        for status, response in operation["responses"].items():
            if status.startswith(("4", "5")) and response.get("content"):
                schema = response["content"]["application/json"]["schema"]
                if status == "503" and name.endswith(("/live", "/ready")):
                    # a health answer: "false" in the same body as "true" (the protocol's)
                    ok = operation["responses"]["200"]["content"]["application/json"]["schema"]
                    assert schema == ok, f"{name} {status}"
                    continue
                assert schema == {"$ref": "#/components/schemas/V2Error"}, f"{name} {status}"
        if operation.get("parameters"):
            assert "422" in operation["responses"], name
