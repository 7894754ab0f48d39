"""What each failure of an inference call answers over HTTP, decided once for every protocol.

``/predict`` answers these as the JSON error shape; the Open Inference Protocol routes reshape the
same ``ApiError`` into ``{"error": message}``. Unexpected failures are logged with the request id and
answered 500 without their details.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator

from app.edge.http_errors import ApiError, retry_after_headers
from app.model.preprocessing import ImageTooLargeError
from app.serving.admission import OverloadedError
from app.serving.batcher import BatcherClosedError, DeadlineExceededError, QueueFullError
from app.serving.errors import (
    DrainingError,
    InvalidInputError,
    InvalidParameterError,
    NotReadyError,
)
from app.serving.explainer import ExplainerBusyError
from app.serving.pipeline import DecodeBudgetError, RejectedImageError

logger = logging.getLogger(__name__)
ImageNamer = Callable[[int], str]


def default_name(index: int) -> str:
    return f"image {index}"


@contextlib.contextmanager
def inference_errors(
    request_id: str, timeout_s: float, name_of: ImageNamer = default_name
) -> Iterator[None]:
    """Raise every failure inside as an ``ApiError``; ``name_of`` names a rejected image."""
    try:
        yield
    except ApiError:
        raise
    except Exception as exc:
        raise as_api_error(exc, request_id, timeout_s, name_of) from exc


def as_api_error(
    exc: Exception, request_id: str, timeout_s: float, name_of: ImageNamer = default_name
) -> ApiError:
    """The HTTP answer to ``exc``, raised by an inference call."""
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
        case InvalidParameterError():
            return ApiError(422, "invalid_parameter", str(exc))
        case InvalidInputError():
            return ApiError(400, "invalid_input", str(exc))
        case DeadlineExceededError() | TimeoutError():
            return ApiError(504, "deadline_exceeded", f"not answered within {timeout_s}s")
    logger.error("inference failed for request %s", request_id, exc_info=exc)
    return ApiError(500, "inference_failed", f"inference failed (request id {request_id})")
