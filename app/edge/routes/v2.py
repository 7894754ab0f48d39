"""The Open Inference Protocol (KServe v2 / Triton REST) beside /predict, for KServe and Triton clients.

The same inference service, limits, deadlines and error mapping as /predict; only the body format
differs (``app.edge.routes.v2_codec``). Errors answer ``{"error": "..."}`` under /v2 (``app.edge.http_errors``). The
served bundle is the one model, version "1"; any other name or version is 404.

The model metadata gives each input one datatype, as the protocol has it: ``PIXELS`` says ``UINT8``,
but ``FP32`` pixels (values 0..255) are accepted too. ``/config`` is Triton's own extension, for
``tritonclient``'s ``get_model_config()`` and the tools built on it.
"""

from __future__ import annotations

from importlib.metadata import version as package_version
from typing import Any

from fastapi import APIRouter, Request, Response

from app.edge.http_errors import V2_PREFIX, ApiError
from app.edge.routes.dependencies import ServiceDep
from app.edge.routes.inference import inference_request
from app.edge.routes.uploads import read_body
from app.edge.routes.v2_codec import (
    ABSTAINED,
    HEADER_LENGTH,
    IMAGE_INPUT,
    MODEL_VERSION,
    PIXELS_INPUT,
    PROBABILITIES,
    encode_response,
    parse_request,
)
from app.serving.service import InferenceService
from app.wire.open_inference import (
    ModelMetadata,
    ServerMetadata,
    TensorMetadata,
    TritonModelConfig,
    TritonTensorConfig,
    V2Error,
    V2InferRequest,
    V2InferResponse,
    inline_json_schema,
)

PLATFORM = "pytorch"
EXTENSIONS = ["classification", "binary_tensor_data"]
# Health answers are the status code alone, with an empty body, as the protocol says.
EMPTY_STATUS: dict[int | str, dict] = {
    200: {"description": "true", "content": {}},
    503: {"description": "false", "content": {}},
}


# An example message for each status a /v2 route may answer with an error.
ERROR_EXAMPLES = {
    400: "PIXELS must be UINT8 or FP32 with shape [N,3,112,112], got UINT8 [1, 3, 8, 8]",
    401: "missing bearer token: send 'Authorization: Bearer <key>'",
    404: "unknown model resnet50; this server serves demo",
    408: "request body not received within 10.0s",
    413: "80 images in one request; the limit is 64",
    422: "query.version: Input should be a valid string",
    503: "warming up",
    504: "not answered within 30.0s",
}


def _v2_errors(*statuses: int) -> dict[int | str, dict]:
    """OpenAPI responses in the protocol's error shape, with an example for each status.

    Each route lists 422 so that FastAPI does not add its ``HTTPValidationError``, a shape /v2
    never answers (``app.edge.http_errors``).
    """
    return {
        status: {
            "model": V2Error,
            "content": {"application/json": {"example": {"error": ERROR_EXAMPLES[status]}}},
        }
        for status in statuses
    }


MODEL_ERRORS = _v2_errors(404, 422, 503)
INFER_ERRORS = _v2_errors(400, 401, 404, 408, 413, 422, 503, 504)
BINARY = {"schema": {"type": "string", "format": "binary"}}
# The route reads its body itself (v2_codec), so FastAPI can neither infer nor check its schema.
INFER_OPENAPI: dict[str, Any] = {
    "response_model": V2InferResponse,
    "responses": INFER_ERRORS
    | {
        200: {
            "description": "The outputs as JSON; or, when any is asked for as binary data, a "
            "JSON header of Inference-Header-Content-Length bytes, then those outputs' bytes "
            "in order.",
            "content": {"application/octet-stream": BINARY},
            "headers": {
                "Inference-Header-Content-Length": {
                    "description": "With binary outputs: the length of the JSON header.",
                    "schema": {"type": "integer"},
                }
            },
        }
    },
    "openapi_extra": {
        "requestBody": {
            "required": True,
            "description": "JSON; or, with the binary tensor extension, the same JSON as a header "
            "of Inference-Header-Content-Length bytes (a request header), then each input's "
            "bytes, as many as its binary_data_size.",
            "content": {
                "application/json": {"schema": inline_json_schema(V2InferRequest)},
                "application/octet-stream": BINARY,
            },
        }
    },
}

router = APIRouter(prefix=V2_PREFIX, tags=["Open Inference Protocol (v2)"])
infer_router = APIRouter(prefix=V2_PREFIX, tags=["Open Inference Protocol (v2)"])


def _served_model(service: InferenceService, name: str, version: str | None) -> None:
    """404 unless ``name`` (and ``version``) is the served model."""
    served = service.manifest.name
    if name != served or version not in (None, MODEL_VERSION):
        shown = name if version is None else f"{name} version {version}"
        raise ApiError(
            404, "model_not_found", f"unknown model {shown}; this server serves {served}"
        )


def _tensors(service: InferenceService) -> tuple[list[TensorMetadata], list[TensorMetadata]]:
    """The model's inputs and outputs: the one source of the metadata and the config."""
    return (
        [
            TensorMetadata(name=IMAGE_INPUT, datatype="BYTES", shape=[-1]),
            TensorMetadata(name=PIXELS_INPUT, datatype="UINT8", shape=[-1, *service.image_shape]),
        ],
        [
            TensorMetadata(
                name=PROBABILITIES, datatype="FP32", shape=[-1, service.manifest.num_classes]
            ),
            TensorMetadata(name=ABSTAINED, datatype="BOOL", shape=[-1]),
        ],
    )


def _triton_tensor(tensor: TensorMetadata) -> TritonTensorConfig:
    # Triton names BYTES TYPE_STRING; with batching its dims leave out the batch dimension.
    data_type = "TYPE_STRING" if tensor.datatype == "BYTES" else f"TYPE_{tensor.datatype}"
    return TritonTensorConfig(name=tensor.name, data_type=data_type, dims=tensor.shape[1:])


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


@router.get("/models/{name}", responses=MODEL_ERRORS)
@router.get("/models/{name}/versions/{version}", responses=MODEL_ERRORS)
async def model_metadata(
    service: ServiceDep, name: str, version: str | None = None
) -> ModelMetadata:
    """The model's inputs (encoded images or pixels) and its two outputs. ``PIXELS`` is listed as
    ``UINT8`` (one datatype per input, as the protocol has it); ``FP32`` pixels are accepted too."""
    _served_model(service, name, version)
    inputs, outputs = _tensors(service)
    return ModelMetadata(
        name=service.manifest.name,
        versions=[MODEL_VERSION],
        platform=PLATFORM,
        inputs=inputs,
        outputs=outputs,
    )


@router.get("/models/{name}/config", responses=MODEL_ERRORS)
@router.get("/models/{name}/versions/{version}/config", responses=MODEL_ERRORS)
async def model_config(
    service: ServiceDep, name: str, version: str | None = None
) -> TritonModelConfig:
    """Triton's model configuration (its extension, not the protocol's): the metadata's tensors in
    Triton's terms, and the largest batch a request may carry."""
    _served_model(service, name, version)
    inputs, outputs = _tensors(service)
    settings = service.settings
    return TritonModelConfig(
        name=service.manifest.name,
        platform=PLATFORM,
        # Triton clients send batches up to max_batch_size: promise only what both limits allow.
        max_batch_size=min(service.pipeline.runner.max_batch_size, settings.max_images_per_request),
        input=[_triton_tensor(tensor) for tensor in inputs],
        output=[_triton_tensor(tensor) for tensor in outputs],
    )


@router.get("/models/{name}/ready", response_class=Response, responses=EMPTY_STATUS | MODEL_ERRORS)
@router.get(
    "/models/{name}/versions/{version}/ready",
    response_class=Response,
    responses=EMPTY_STATUS | MODEL_ERRORS,
)
async def model_ready(service: ServiceDep, name: str, version: str | None = None) -> Response:
    _served_model(service, name, version)
    return Response(status_code=200 if service.health().ready else 503)


@infer_router.post("/models/{name}/infer", **INFER_OPENAPI)
@infer_router.post("/models/{name}/versions/{version}/infer", **INFER_OPENAPI)
async def infer(
    request: Request, service: ServiceDep, name: str, version: str | None = None
) -> Response:
    """Classify a ``BYTES`` tensor of encoded images, or a ``UINT8`` or ``FP32`` pixel tensor at the
    model's input size."""
    _served_model(service, name, version)
    settings = service.settings
    async with inference_request(request, service) as http:
        body = await http.upload(read_body(request, settings.max_body_bytes))
        # Off the event loop, which does nothing whose cost grows with what a client sends;
        # parse_request reads a body's numbers a piece at a time, so the GIL comes back to the
        # event loop between pieces.
        parsed = await http.call.parse(
            parse_request,
            body,
            request.headers.get(HEADER_LENGTH),
            service.image_shape,
            settings.max_images_per_request,
        )
        # No top-k here: the classification extension ranks the probabilities itself.
        work = (
            http.call.classify_encoded(parsed.inputs)
            if isinstance(parsed.inputs, list)
            else http.call.classify_pixels(parsed.inputs)
        )
        results = await http.answer(work, images=parsed.count)
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
