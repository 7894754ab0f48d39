"""One JSON error shape for every failure: ``{"error": {"code": ..., "message": ...}}``, and the
Open Inference Protocol's ``{"error": message}`` for paths under /v2."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from app.serving.errors import ModelNotFoundError

logger = logging.getLogger(__name__)
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


async def _model_not_found(request: Request, exc: ModelNotFoundError) -> JSONResponse:
    _count_rejection(request, "model_not_found")
    return error_response(ApiError(404, "model_not_found", str(exc)), request.url.path)


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
    app.add_exception_handler(ModelNotFoundError, _model_not_found)  # type: ignore[arg-type]  # for it only
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]  # for it only
    app.add_exception_handler(Exception, _unexpected_error)
