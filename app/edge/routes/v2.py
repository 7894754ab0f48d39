"""The Open Inference Protocol (KServe v2 / Triton REST) beside /predict, for KServe and Triton clients.

The same inference service, limits, deadlines and error mapping as /predict; only the body format
differs (``app.edge.open_inference``). Errors answer ``{"error": "..."}`` under /v2 (``app.edge.http_errors``). Every
model served is named by its name, and a version by its number (else the latest served); any other
name or version is 404, a model unloaded 503.

The model metadata gives each input one datatype, as the protocol has it: ``PIXELS`` says ``UINT8``,
but ``FP32`` pixels (values 0..255) are accepted too. ``/config`` is Triton's own extension, for
``tritonclient``'s ``get_model_config()`` and the tools built on it.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from app.edge.http_errors import V2_PREFIX
from app.edge.open_inference import model
from app.edge.open_inference.codec import HEADER_LENGTH, encode_response, parse_request
from app.edge.routes.dependencies import ServiceDep
from app.edge.routes.inference import inference_request
from app.edge.routes.uploads import read_body
from app.wire.open_inference import (
    LiveResponse,
    ModelMetadata,
    ModelReadyResponse,
    ModelStatisticsResponse,
    ReadyResponse,
    ServerMetadata,
    TritonModelConfig,
    V2Error,
    V2InferRequest,
    V2InferResponse,
    inline_json_schema,
)


# Health answers: the status code says it (the older v2 text has no body), and so does the body
# (the Open Inference Protocol's REST text, and KServe's SDK, which parses it).
def _health_responses(model: type[Any]) -> dict[int | str, dict]:
    return {
        200: {"model": model, "description": "true"},
        503: {"model": model, "description": "false"},
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


def v2_errors(*statuses: int) -> dict[int | str, dict]:
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


MODEL_ERRORS = v2_errors(404, 422, 503)
INFER_ERRORS = v2_errors(400, 401, 404, 408, 413, 422, 503, 504)
BINARY = {"schema": {"type": "string", "format": "binary"}}
# The route reads its body itself (app.edge.open_inference.codec), so FastAPI can neither infer nor check its schema.
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


@router.get("")
async def server_metadata() -> ServerMetadata:
    """Server name, version and the protocol extensions it supports."""
    return model.server_metadata()


@router.get("/health/live", responses=_health_responses(LiveResponse))
async def server_live(service: ServiceDep, response: Response) -> LiveResponse:
    live = service.health().live
    response.status_code = 200 if live else 503
    return LiveResponse(live=live)


@router.get("/health/ready", responses=_health_responses(ReadyResponse))
async def server_ready(service: ServiceDep, response: Response) -> ReadyResponse:
    ready = service.health().ready
    response.status_code = 200 if ready else 503
    return ReadyResponse(ready=ready)


@router.get("/models/stats")
async def all_model_statistics(service: ServiceDep) -> ModelStatisticsResponse:
    """Triton's statistics extension for every version of every model served."""
    return model.model_statistics(service)


@router.get("/models/{name}", responses=MODEL_ERRORS)
@router.get("/models/{name}/versions/{version}", responses=MODEL_ERRORS)
async def model_metadata(
    service: ServiceDep, name: str, version: str | None = None
) -> ModelMetadata:
    """The model's inputs (encoded images or pixels) and its two outputs. ``PIXELS`` is listed as
    ``UINT8`` (one datatype per input, as the protocol has it); ``FP32`` pixels are accepted too."""
    return model.model_metadata(service, name, version)


@router.get("/models/{name}/config", responses=MODEL_ERRORS)
@router.get("/models/{name}/versions/{version}/config", responses=MODEL_ERRORS)
async def model_config(
    service: ServiceDep, name: str, version: str | None = None
) -> TritonModelConfig:
    """Triton's model configuration (its extension, not the protocol's): the metadata's tensors in
    Triton's terms, and the largest batch a request may carry."""
    return model.model_config(service, name, version)


@router.get("/models/{name}/stats", responses=MODEL_ERRORS)
@router.get("/models/{name}/versions/{version}/stats", responses=MODEL_ERRORS)
async def model_statistics(
    service: ServiceDep, name: str, version: str | None = None
) -> ModelStatisticsResponse:
    """Triton's statistics extension: counts and cumulative nanoseconds of requests, queueing,
    decoding, forward passes and answers, and of the passes at each batch size."""
    return model.model_statistics(service, name, version)


@router.get("/models/{name}/ready", responses=MODEL_ERRORS | _health_responses(ModelReadyResponse))
@router.get(
    "/models/{name}/versions/{version}/ready",
    responses=MODEL_ERRORS | _health_responses(ModelReadyResponse),
)
async def model_ready(
    service: ServiceDep, response: Response, name: str, version: str | None = None
) -> ModelReadyResponse:
    ready = service.model_ready(name, version)
    response.status_code = 200 if ready else 503
    return ModelReadyResponse(name=name, ready=ready)


@infer_router.post("/models/{name}/infer", **INFER_OPENAPI)
@infer_router.post("/models/{name}/versions/{version}/infer", **INFER_OPENAPI)
async def infer(
    request: Request, service: ServiceDep, name: str, version: str | None = None
) -> Response:
    """Classify a ``BYTES`` tensor of encoded images, or a ``UINT8`` or ``FP32`` pixel tensor at the
    model's input size."""
    settings = service.settings
    async with inference_request(request, service, model=name, version=version) as http:
        body = await http.upload(read_body(request, settings.max_body_bytes))
        # Off the event loop, which does nothing whose cost grows with what a client sends;
        # parse_request reads a body's numbers a piece at a time, so the GIL comes back to the
        # event loop between pieces.
        parsed = await http.call.parse(
            parse_request,
            body,
            request.headers.get(HEADER_LENGTH),
            http.call.version.image_shape,
            settings.max_images_per_request,
        )
        # No top-k here: the classification extension ranks the probabilities itself.
        work = (
            http.call.classify_encoded(parsed.inputs)
            if isinstance(parsed.inputs, list)
            else http.call.classify_pixels(parsed.inputs)
        )
        results = await http.answer(work, images=parsed.count)
        ran_on = http.call.version  # the version it was admitted on, whatever is served now
    content, header_length = encode_response(
        name, ran_on.version, parsed, results, ran_on.manifest.labels
    )
    if header_length is None:
        return Response(content, media_type="application/json")
    return Response(
        content,
        media_type="application/octet-stream",
        headers={"Inference-Header-Content-Length": str(header_length)},
    )
