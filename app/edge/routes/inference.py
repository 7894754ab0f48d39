"""What every inference route shares: the request skeleton, and what each failure answers.

``inference_request`` is the one path of /predict, v2 infer and /explain: admission before the body
is read, the request deadline, the upload deadline, the disconnect watch and the error mapping, so a
limit or an error code is written once. ``/predict`` answers errors as the JSON error shape; the
Open Inference Protocol routes reshape the same ``ApiError`` into ``{"error": message}``.
Unexpected failures are logged with the request id and answered 500 without their details.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from fastapi import Request

from app.edge.http_errors import ApiError, retry_after_headers
from app.edge.routes.uploads import (
    content_encoding,
    too_many_images,
    until_disconnect,
    upload_deadline,
)
from app.model.preprocessing import ImageTooLargeError
from app.serving.admission import OverloadedError
from app.serving.batcher import BatcherClosedError, DeadlineExceededError, QueueFullError
from app.serving.errors import (
    DrainingError,
    InvalidInputError,
    InvalidParameterError,
    NotReadyError,
    TooManyImagesError,
)
from app.serving.explainer import ExplainerBusyError
from app.serving.pipeline import DecodeBudgetError, RejectedImageError
from app.serving.service import InferenceCall, InferenceService

logger = logging.getLogger(__name__)
ImageNamer = Callable[[int], str]
T = TypeVar("T")


def default_name(index: int) -> str:
    return f"image {index}"


class HttpInferenceCall:
    """An admitted inference call with its HTTP request: ``upload`` under the upload deadline,
    ``answer`` under the disconnect watch; both inside the request deadline."""

    def __init__(self, request: Request, call: InferenceCall) -> None:
        self.request = request
        self.call = call
        self.settings = call.service.settings

    async def upload(self, reading: Awaitable[T]) -> T:
        """The body, as ``reading`` (a reader of this request) returns it: 408 when it is late."""
        async with upload_deadline(self.settings.upload_timeout_s):
            return await reading

    async def answer(self, work: Awaitable[T], images: int) -> T:
        """``work`` on ``images`` images, cancelled if the client leaves (its images then leave
        the decode pool and the queue)."""
        self.request.state.images = images
        return await until_disconnect(self.request, work)


@contextlib.asynccontextmanager
async def inference_request(
    request: Request, service: InferenceService, name_of: ImageNamer = default_name
) -> AsyncIterator[HttpInferenceCall]:
    """Admit ``request`` by its declared length before a byte of its body is read (a refusal
    costs microseconds), hold its ticket and deadline, and raise every failure inside as an
    ``ApiError``; ``name_of`` names a rejected image."""
    settings = service.settings
    try:
        # A compressed body may inflate to the size limit: it holds that much, not its length.
        declared = None if content_encoding(request) else request.headers.get("content-length")
        with service.begin(declared) as call:
            async with call.timeout():
                yield HttpInferenceCall(request, call)
            if call.largest_batch:
                request.state.batch_size = call.largest_batch
    except ApiError:
        raise
    except Exception as exc:
        raise as_api_error(
            exc, request.state.request_id, settings.request_timeout_s, name_of
        ) from exc


def as_api_error(
    exc: Exception,
    request_id: str = "-",
    timeout_s: float = 0.0,
    name_of: ImageNamer = default_name,
) -> ApiError:
    """The HTTP answer to ``exc``, raised by an inference call (``request_id`` and ``timeout_s``
    for the messages of a 500 and a 504)."""
    match exc:
        case DrainingError() | BatcherClosedError():  # refused, or past the drain timeout
            return ApiError(
                503, "shutting_down", "server is shutting down", retry_after_headers(1.0)
            )
        case NotReadyError():
            return ApiError(503, "not_ready", str(exc), retry_after_headers(1.0))
        case ExplainerBusyError():
            return ApiError(503, "explain_busy", str(exc), retry_after_headers(exc.retry_after_s))
        case OverloadedError():
            return ApiError(503, "overloaded", str(exc), retry_after_headers(exc.retry_after_s))
        case QueueFullError():
            message = "server is at capacity; retry shortly"
            return ApiError(503, "queue_full", message, retry_after_headers(1.0))
        case RejectedImageError():
            name = name_of(exc.index)
            if isinstance(exc.cause, ImageTooLargeError):
                return ApiError(413, "image_too_large", f"{name}: {exc.cause}")
            return ApiError(400, "invalid_image", f"{name}: {exc.cause}")
        case DecodeBudgetError():
            return ApiError(413, "decode_budget_exceeded", str(exc))
        case TooManyImagesError():
            return too_many_images(exc.limit, exc.count)
        case InvalidParameterError():
            return ApiError(422, "invalid_parameter", str(exc))
        case InvalidInputError():
            return ApiError(400, "invalid_input", str(exc))
        case DeadlineExceededError() | TimeoutError():
            return ApiError(504, "deadline_exceeded", f"not answered within {timeout_s}s")
    logger.error("inference failed for request %s", request_id, exc_info=exc)
    return ApiError(500, "inference_failed", f"inference failed (request id {request_id})")
