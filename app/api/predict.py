"""POST /predict: images in, top-k classes out."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from typing import Annotated, TypeVar

import torch
from fastapi import APIRouter, Query, Request

from app.api.dependencies import ServiceDep
from app.api.errors import ApiError
from app.api.schemas import ErrorResponse, ImagePrediction, PredictResponse, ScoredLabel
from app.api.uploads import ImagePart, client_closed, read_images
from app.batcher import BatcherClosedError, DeadlineExceededError, QueueFullError
from app.pipeline import InferencePipeline
from app.preprocessing import ImageDecodeError, ImageTooLargeError

logger = logging.getLogger(__name__)
router = APIRouter()
DEFAULT_TOP_K = 5
T = TypeVar("T")

ERROR_RESPONSES: dict[int | str, dict] = {
    code: {"model": ErrorResponse} for code in (400, 413, 415, 422, 500, 503, 504)
}


async def _until_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Await ``work`` but cancel it if the client disconnects, so its images are dropped from
    the queue before compute instead of occupying the GPU for nobody."""
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


async def _prepare_all(pipeline: InferencePipeline, parts: list[ImagePart]) -> list[torch.Tensor]:
    async def prepare(part: ImagePart) -> torch.Tensor:
        try:
            return await pipeline.prepare(part.data)
        except ImageTooLargeError as exc:
            raise ApiError(413, "image_too_large", f"{part.name}: {exc}") from exc
        except ImageDecodeError as exc:
            raise ApiError(400, "invalid_image", f"{part.name}: {exc}") from exc

    return list(await asyncio.gather(*(prepare(part) for part in parts)))


@router.post("/predict", response_model=PredictResponse, responses=ERROR_RESPONSES)
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
    parts = await read_images(request, settings.max_body_bytes, settings.max_images_per_request)
    images = await _prepare_all(pipeline, parts)
    prepared = time.perf_counter()
    request.state.images = len(images)
    remaining_s = settings.request_timeout_s - (time.perf_counter() - started)
    try:
        if remaining_s <= 0:
            raise DeadlineExceededError("deadline passed while the images were read and decoded")
        outputs = await _until_disconnect(request, pipeline.classify(images, remaining_s))
    except QueueFullError as exc:
        raise ApiError(
            503, "queue_full", "server is at capacity; retry shortly", {"Retry-After": "1"}
        ) from exc
    except DeadlineExceededError as exc:
        raise ApiError(
            504, "deadline_exceeded", f"not answered within {settings.request_timeout_s}s"
        ) from exc
    except ApiError:
        raise
    except BatcherClosedError as exc:
        raise ApiError(
            503, "shutting_down", "server is shutting down", {"Retry-After": "1"}
        ) from exc
    except Exception as exc:
        logger.exception("inference failed for request %s", request.state.request_id)
        raise ApiError(
            500, "inference_failed", f"inference failed (request id {request.state.request_id})"
        ) from exc
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
