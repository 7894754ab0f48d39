"""POST /predict: images in, top-k classes out. Parse, call the inference service, format."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Query, Request

from app.edge.routes.dependencies import ServiceDep
from app.edge.routes.inference_errors import inference_errors
from app.edge.routes.uploads import ImagePart, read_images, until_disconnect, upload_deadline
from app.serving.service import ImageResult
from app.wire.rest import ErrorResponse, ImagePrediction, PredictResponse, ScoredLabel

router = APIRouter()

ERROR_RESPONSES: dict[int | str, dict] = {
    code: {"model": ErrorResponse} for code in (400, 401, 408, 413, 415, 422, 431, 500, 503, 504)
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
) -> PredictResponse:
    """Classify one or more images (multipart fields ``file``/``files``, or a raw image body)."""
    settings = service.settings
    request_id: str = request.state.request_id
    parts: list[ImagePart] = []
    # Admission comes first, before a byte of the body is read: a refusal costs microseconds.
    with inference_errors(request_id, settings.request_timeout_s, lambda i: parts[i].name):
        k = service.top_k(top_k)
        with service.begin(request.headers.get("content-length")) as call:
            async with call.timeout():
                async with upload_deadline(settings.upload_timeout_s):
                    parts += await read_images(
                        request, settings.max_body_bytes, settings.max_images_per_request
                    )
                request.state.images = len(parts)
                uploads = [part.data for part in parts]
                results = await until_disconnect(request, call.classify_encoded(uploads, k))
    request.state.batch_size = max(result.batch_size for result in results)
    return PredictResponse(
        model=service.manifest.name,
        request_id=request_id,
        results=[_prediction(result) for result in results],
        preprocess_ms=_ms((call.decoded_at or call.started) - call.started),
        total_ms=_ms(time.perf_counter() - call.started),
    )


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def _prediction(result: ImageResult) -> ImagePrediction:
    return ImagePrediction(
        predictions=[ScoredLabel(label=c.label, index=c.index, score=c.score) for c in result.top],
        batch_size=result.batch_size,
        queue_ms=_ms(result.queue_s),
        inference_ms=_ms(result.compute_s),
        abstained=result.abstained,
    )
