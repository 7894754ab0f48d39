"""The Open Inference Protocol (KServe v2 / Triton REST) beside /predict, for KServe and Triton clients.

The same inference service, limits, deadlines and error mapping as /predict; only the body format
differs (``app.api.v2_codec``). Errors answer ``{"error": "..."}`` under /v2 (``app.api.errors``). The
served bundle is the one model, version "1"; any other name or version is 404.
"""

from __future__ import annotations

from importlib.metadata import version as package_version

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel

from app.api.dependencies import ServiceDep
from app.api.errors import ApiError
from app.api.inference_errors import inference_errors
from app.api.uploads import read_body, until_disconnect, upload_deadline
from app.api.v2_codec import (
    ABSTAINED,
    HEADER_LENGTH,
    IMAGE_INPUT,
    PIXELS_INPUT,
    PROBABILITIES,
    encode_response,
    parse_request,
    split_body,
)
from app.inference import InferenceService

MODEL_VERSION = "1"
ERROR = {"content": {"application/json": {"example": {"error": "unknown model x"}}}}
# Health answers are the status code alone, with an empty body, as the protocol says.
EMPTY_STATUS: dict[int | str, dict] = {
    200: {"description": "true", "content": {}},
    503: {"description": "false", "content": {}},
}
V2_ERRORS: dict[int | str, dict] = {code: ERROR for code in (400, 401, 404, 408, 413, 503, 504)}
INFER_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "example": {
                "id": "request-1",
                "inputs": [
                    {"name": "IMAGE", "shape": [1], "datatype": "BYTES", "data": ["<base64 JPEG>"]}
                ],
                "outputs": [{"name": "PROBABILITIES", "parameters": {"classification": 3}}],
            }
        },
        "application/octet-stream": {
            "schema": {"type": "string", "format": "binary"},
            "description": "The binary tensor extension: a JSON header of "
            "Inference-Header-Content-Length bytes, then the tensors' bytes.",
        },
    },
}


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


EXTENSIONS = ["classification", "binary_tensor_data"]

router = APIRouter(prefix="/v2", tags=["Open Inference Protocol (v2)"])
infer_router = APIRouter(prefix="/v2", tags=["Open Inference Protocol (v2)"])


def _served_model(service: InferenceService, name: str, version: str | None) -> None:
    """404 unless ``name`` (and ``version``) is the served model; 503 before it is loaded."""
    with inference_errors("-", service.settings.request_timeout_s):
        served = service.manifest.name
    if name != served or version not in (None, MODEL_VERSION):
        shown = name if version is None else f"{name} version {version}"
        raise ApiError(
            404, "model_not_found", f"unknown model {shown}; this server serves {served}"
        )


@router.get("")
async def server_metadata() -> ServerMetadata:
    """Server name, version and the protocol extensions it supports."""
    return ServerMetadata(
        name="resnet-serve", version=package_version("resnet-serve"), extensions=EXTENSIONS
    )


@router.get("/health/live", response_class=Response, responses=EMPTY_STATUS)
async def server_live(service: ServiceDep) -> Response:
    return Response(status_code=200 if service.health().live else 503)


@router.get("/health/ready", response_class=Response, responses=EMPTY_STATUS)
async def server_ready(service: ServiceDep) -> Response:
    return Response(status_code=200 if service.health().ready else 503)


@router.get("/models/{name}", responses=V2_ERRORS)
@router.get("/models/{name}/versions/{version}", responses=V2_ERRORS)
async def model_metadata(
    service: ServiceDep, name: str, version: str | None = None
) -> ModelMetadata:
    """The model's inputs (encoded images or pixels) and its one output."""
    _served_model(service, name, version)
    manifest = service.manifest
    size = manifest.preprocessing.input_size
    return ModelMetadata(
        name=manifest.name,
        versions=[MODEL_VERSION],
        platform="pytorch",
        inputs=[
            TensorMetadata(name=IMAGE_INPUT, datatype="BYTES", shape=[-1]),
            TensorMetadata(name=PIXELS_INPUT, datatype="UINT8", shape=[-1, 3, size, size]),
        ],
        outputs=[
            TensorMetadata(name=PROBABILITIES, datatype="FP32", shape=[-1, manifest.num_classes]),
            TensorMetadata(name=ABSTAINED, datatype="BOOL", shape=[-1]),
        ],
    )


@router.get("/models/{name}/ready", response_class=Response, responses=EMPTY_STATUS | V2_ERRORS)
@router.get(
    "/models/{name}/versions/{version}/ready",
    response_class=Response,
    responses=EMPTY_STATUS | V2_ERRORS,
)
async def model_ready(service: ServiceDep, name: str, version: str | None = None) -> Response:
    _served_model(service, name, version)
    return Response(status_code=200 if service.health().ready else 503)


@infer_router.post(
    "/models/{name}/infer", responses=V2_ERRORS, openapi_extra={"requestBody": INFER_BODY}
)
@infer_router.post(
    "/models/{name}/versions/{version}/infer",
    responses=V2_ERRORS,
    openapi_extra={"requestBody": INFER_BODY},
)
async def infer(
    request: Request, service: ServiceDep, name: str, version: str | None = None
) -> Response:
    """Classify a ``BYTES`` tensor of encoded images or a pixel tensor at the input size."""
    _served_model(service, name, version)
    settings = service.settings
    request_id = request.state.request_id
    with inference_errors(request_id, settings.request_timeout_s), service.begin() as call:
        async with call.timeout():
            async with upload_deadline(settings.upload_timeout_s):
                body = await read_body(request, settings.max_body_bytes)
            header, binary = split_body(body, request.headers.get(HEADER_LENGTH))
            parsed = parse_request(header, binary, service.image_shape)
            if parsed.count > settings.max_images_per_request:
                raise ApiError(
                    413,
                    "too_many_images",
                    f"{parsed.count} images in one request; the limit is "
                    f"{settings.max_images_per_request}",
                )
            request.state.images = parsed.count
            # No top-k here: the classification extension ranks the probabilities itself.
            work = (
                call.classify_encoded(parsed.images)
                if parsed.images is not None
                else call.classify_pixels(parsed.pixels)  # type: ignore[arg-type]
            )
            results = await until_disconnect(request, work)
    request.state.batch_size = max(result.batch_size for result in results)
    content, header_length = encode_response(
        service.manifest.name, parsed, results, service.manifest.labels
    )
    if header_length is None:
        return Response(content, media_type="application/json")
    return Response(
        content,
        media_type="application/octet-stream",
        headers={"Inference-Header-Content-Length": str(header_length)},
    )
