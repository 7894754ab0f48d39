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
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar

from fastapi import Request

from app.edge.http_errors import ApiError, ImageNamer, as_api_error, default_name
from app.edge.routes.uploads import content_encoding, until_disconnect, upload_deadline
from app.serving.service import InferenceCall, InferenceService

logger = logging.getLogger(__name__)
T = TypeVar("T")


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
    request: Request,
    service: InferenceService,
    name_of: ImageNamer = default_name,
    model: str | None = None,
    version: str | None = None,
) -> AsyncIterator[HttpInferenceCall]:
    """Admit ``request`` for ``model`` (at ``version``) by its declared length before a byte of
    its body is read (a refusal costs microseconds), hold its ticket and deadline, and raise every
    failure inside as an ``ApiError``; ``name_of`` names a rejected image."""
    settings = service.settings
    try:
        # A compressed body may inflate to the size limit: it holds that much, not its length.
        declared = None if content_encoding(request) else request.headers.get("content-length")
        with service.begin(declared, model=model, version=version) as call:
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
