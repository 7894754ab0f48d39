"""POST /predict: images in, top-k classes out. Parse, call the inference service, format."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Query, Request

from app.edge.routes.dependencies import ModelQuery, ServiceDep
from app.edge.routes.inference import inference_request
from app.edge.routes.uploads import ImagePart, read_images
from app.wire.rest import ErrorResponse, PredictResponse

router = APIRouter()

ERROR_RESPONSES: dict[int | str, dict] = {
    code: {"model": ErrorResponse}
    for code in (400, 401, 404, 408, 413, 415, 422, 431, 500, 503, 504)
}


# The route reads its body itself (streamed, within limits), so FastAPI cannot infer its schema.
REQUEST_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {
                    "file": {"type": "string", "format": "binary"},
                    "files": {"type": "array", "items": {"type": "string", "format": "binary"}},
                },
            },
            "encoding": {"file": {"contentType": "image/*"}, "files": {"contentType": "image/*"}},
        },
        "image/*": {"schema": {"type": "string", "format": "binary"}},
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
    },
}


@router.post(
    "/predict",
    response_model=PredictResponse,
    responses=ERROR_RESPONSES,
    openapi_extra={"requestBody": REQUEST_BODY},
)
async def predict(
    request: Request,
    service: ServiceDep,
    top_k: Annotated[
        int | None,
        Query(ge=1, description="Classes per image, 1..number of classes (default 5, or fewer)."),
    ] = None,
    model: ModelQuery = None,
) -> PredictResponse:
    """Classify one or more images (multipart fields ``file``/``files``, or a raw image body)."""
    settings = service.settings
    parts: list[ImagePart] = []
    async with inference_request(request, service, lambda i: parts[i].name, model) as http:
        k = http.call.version.top_k(top_k)
        reading = read_images(request, settings.max_body_bytes, settings.max_images_per_request)
        parts += await http.upload(reading)
        work = http.call.classify_encoded([part.data for part in parts], k)
        results = await http.answer(work, images=len(parts))
    return PredictResponse(
        model=http.call.model,
        version=http.call.version.version,
        request_id=request.state.request_id,
        results=[result.as_prediction() for result in results],
        preprocess_ms=_ms((http.call.decoded_at or http.call.started) - http.call.started),
        total_ms=_ms(time.perf_counter() - http.call.started),
    )


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)
