"""POST /predict: images in, top-k classes out."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Iterator
from typing import Annotated, TypeVar

from fastapi import APIRouter, Query, Request

from app.admission import OverloadedError
from app.api.dependencies import Service, ServiceDep
from app.api.errors import ApiError, retry_after_headers
from app.api.schemas import ErrorResponse, ImagePrediction, PredictResponse, ScoredLabel
from app.api.uploads import ImagePart, client_closed, read_images
from app.batcher import BatcherClosedError, DeadlineExceededError, QueueFullError
from app.pipeline import DecodeBudgetError, RejectedImageError
from app.preprocessing import ImageTooLargeError
from app.settings import Settings

logger = logging.getLogger(__name__)
router = APIRouter()
DEFAULT_TOP_K = 5
T = TypeVar("T")

ERROR_RESPONSES: dict[int | str, dict] = {
    code: {"model": ErrorResponse} for code in (400, 401, 408, 413, 415, 422, 500, 503, 504)
}


async def _until_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Await ``work`` but cancel it if the client disconnects, so its images are dropped from
    the decode pool and the queue instead of occupying them for nobody."""
    task = asyncio.ensure_future(work)

    async def watch() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass
        task.cancel()

    watcher = asyncio.ensure_future(watch())
    try:
        return await task
    except asyncio.CancelledError:
        if not watcher.done():
            raise  # the server is cancelling this request, not the client
        raise client_closed() from None
    finally:
        watcher.cancel()


@contextlib.contextmanager
def _as_api_errors(request: Request, parts: list[ImagePart], service: Service) -> Iterator[None]:
    """Map the pipeline's failures to their HTTP answers, in one place."""
    try:
        yield
    except ApiError:
        raise
    except OverloadedError as exc:
        service.metrics.refused.inc()
        raise ApiError(503, "overloaded", str(exc), retry_after_headers(exc.retry_after_s)) from exc
    except QueueFullError as exc:
        raise ApiError(
            503, "queue_full", "server is at capacity; retry shortly", retry_after_headers(1.0)
        ) from exc
    except RejectedImageError as exc:
        name = parts[exc.index].name
        if isinstance(exc.cause, ImageTooLargeError):
            raise ApiError(413, "image_too_large", f"{name}: {exc.cause}") from exc
        raise ApiError(400, "invalid_image", f"{name}: {exc.cause}") from exc
    except DecodeBudgetError as exc:
        raise ApiError(413, "decode_budget_exceeded", str(exc)) from exc
    except DeadlineExceededError as exc:
        raise ApiError(
            504,
            "deadline_exceeded",
            f"not answered within {service.settings.request_timeout_s}s",
        ) from exc
    except BatcherClosedError as exc:
        raise ApiError(
            503, "shutting_down", "server is shutting down", retry_after_headers(1.0)
        ) from exc
    except Exception as exc:
        logger.exception("inference failed for request %s", request.state.request_id)
        raise ApiError(
            500, "inference_failed", f"inference failed (request id {request.state.request_id})"
        ) from exc


async def _read_within_upload_timeout(request: Request, settings: Settings) -> list[ImagePart]:
    try:
        async with asyncio.timeout(settings.upload_timeout_s) as upload:
            return await read_images(
                request, settings.max_body_bytes, settings.max_images_per_request
            )
    except TimeoutError:
        if not upload.expired():
            raise
        raise ApiError(
            408,
            "upload_timeout",
            f"request body not received within {settings.upload_timeout_s}s",
            {"Connection": "close"},
        ) from None


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
    started = time.perf_counter()
    pipeline = service.pipeline
    if not service.state.ready or pipeline is None:
        raise ApiError(503, "not_ready", service.state.reason, {"Retry-After": "1"})
    num_classes = len(pipeline.runner.labels)
    if top_k is None:
        top_k = min(DEFAULT_TOP_K, num_classes)
    elif top_k > num_classes:
        raise ApiError(422, "invalid_parameter", f"top_k must be <= {num_classes}, got {top_k}")
    settings = service.settings
    parts: list[ImagePart] = []
    # Admission comes first, before a byte of the body is read: a refusal costs microseconds.
    with _as_api_errors(request, parts, service), pipeline.admit() as ticket:
        try:
            async with asyncio.timeout(settings.request_timeout_s) as deadline:
                parts += await _read_within_upload_timeout(request, settings)
                request.state.images = len(parts)
                work = pipeline.prepare_all([part.data for part in parts], ticket)
                images = await _until_disconnect(request, work)
                prepared = time.perf_counter()
                remaining_s = (deadline.when() or 0) - asyncio.get_running_loop().time()
                if remaining_s <= 0:
                    raise DeadlineExceededError("deadline passed while the images were decoded")
                classify = pipeline.classify(images, remaining_s)
                outputs = await _until_disconnect(request, classify)
        except TimeoutError as exc:
            if not deadline.expired():
                raise
            raise DeadlineExceededError("deadline passed") from exc
    metrics = service.metrics
    results = []
    for output in outputs:
        metrics.queue_wait.observe(output.queue_wait_s)
        metrics.inference.observe(output.compute_s)
        metrics.batch_size.observe(output.batch_size)
        top = pipeline.runner.top_k(output.value, top_k)
        results.append(
            ImagePrediction(
                predictions=[ScoredLabel(label=c.label, index=c.index, score=c.score) for c in top],
                batch_size=output.batch_size,
                queue_ms=round(output.queue_wait_s * 1000, 3),
                inference_ms=round(output.compute_s * 1000, 3),
            )
        )
    metrics.images.inc(len(results))
    request.state.batch_size = max(output.batch_size for output in outputs)
    return PredictResponse(
        model=pipeline.runner.bundle.manifest.name,
        request_id=request.state.request_id,
        results=results,
        preprocess_ms=round((prepared - started) * 1000, 3),
        total_ms=round((time.perf_counter() - started) * 1000, 3),
    )
