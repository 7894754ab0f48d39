"""One JSON error shape for every failure: ``{"error": {"code": ..., "message": ...}}``, and the
Open Inference Protocol's ``{"error": message}`` for paths under /v2."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from app.model.preprocessing import ImageTooLargeError
from app.serving.admission import OverloadedError
from app.serving.batcher import BatcherClosedError, DeadlineExceededError, QueueFullError
from app.serving.errors import (
    DrainingError,
    InvalidInputError,
    InvalidParameterError,
    ModelNotFoundError,
    NotReadyError,
    TooManyImagesError,
)
from app.serving.explainer import ExplainerBusyError
from app.serving.pipeline import DecodeBudgetError, RejectedImageError

logger = logging.getLogger(__name__)
ImageNamer = Callable[[int], str]
# The Open Inference Protocol's routes live under this prefix and answer errors in its own shape.
V2_PREFIX = "/v2"


class ApiError(Exception):
    """An expected failure with its HTTP status, a stable machine code and a human sentence."""

    def __init__(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


def retry_after_headers(retry_after_s: float) -> dict[str, str]:
    """``Retry-After`` in whole seconds, at least 1: RFC 9110 allows only whole seconds there, and
    clients and proxies parse nothing else; ``Retry-After-Ms`` carries the estimate in
    milliseconds for clients that can use it. Every 503 carries both."""
    return {
        "Retry-After": str(max(1, math.ceil(retry_after_s))),
        "Retry-After-Ms": str(round(retry_after_s * 1000)),
    }


def default_name(index: int) -> str:
    return f"image {index}"


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
        case ModelNotFoundError():
            return ApiError(404, "model_not_found", str(exc))
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
            return ApiError(413, "too_many_images", str(exc))
        case InvalidParameterError():
            return ApiError(422, "invalid_parameter", str(exc))
        case InvalidInputError():
            return ApiError(400, "invalid_input", str(exc))
        case DeadlineExceededError() | TimeoutError():
            return ApiError(504, "deadline_exceeded", f"not answered within {timeout_s}s")
    logger.error("inference failed for request %s", request_id, exc_info=exc)
    return ApiError(500, "inference_failed", f"inference failed (request id {request_id})")


def error_response(error: ApiError, path: str) -> JSONResponse:
    """``error`` answered to a request for ``path``: our shape, or the Open Inference Protocol's
    ``{"error": message}`` under /v2 (its clients read nothing else)."""
    if path == V2_PREFIX or path.startswith(V2_PREFIX + "/"):
        body: dict = {"error": error.message}
    else:
        body = {"error": {"code": error.code, "message": error.message}}
    return JSONResponse(body, status_code=error.status, headers=error.headers)


def _count_rejection(request: Request, code: str) -> None:
    request.app.state.service.metrics.count_rejection(code)


async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
    _count_rejection(request, exc.code)
    return error_response(exc, request.url.path)


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return error_response(
        ApiError(exc.status_code, code, str(exc.detail), exc.headers), request.url.path
    )


async def _model_state_error(
    request: Request, exc: ModelNotFoundError | NotReadyError
) -> JSONResponse:
    """A model that is not served, or not now (unloaded), named outside an inference call."""
    return await _api_error(request, as_api_error(exc))


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    _count_rejection(request, "invalid_parameter")
    return error_response(
        ApiError(422, "invalid_parameter", f"{where}: {first['msg']}"), request.url.path
    )


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    request_id = getattr(request.state, "request_id", "-")
    logger.error("request %s failed", request_id, exc_info=exc)
    _count_rejection(request, "internal_error")
    error = ApiError(500, "internal_error", f"internal error (request id {request_id})")
    return error_response(error, request.url.path)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)  # type: ignore[arg-type]  # called for ApiError only
    app.add_exception_handler(HTTPException, _http_error)  # type: ignore[arg-type]  # for HTTPException only
    app.add_exception_handler(ModelNotFoundError, _model_state_error)  # type: ignore[arg-type]  # for it only
    app.add_exception_handler(NotReadyError, _model_state_error)  # type: ignore[arg-type]  # for it only
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]  # for it only
    app.add_exception_handler(Exception, _unexpected_error)
