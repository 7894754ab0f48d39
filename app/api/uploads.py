"""Read the images of a /predict request: multipart parts or a raw body, within the size limits.

The body is consumed as a stream and refused with 413 as soon as it passes ``max_body_bytes``, so an
oversized upload is never held in memory whole.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from app.api.errors import ApiError

FILE_FIELDS = ("file", "files")
RAW_CONTENT_TYPES = ("application/octet-stream",)


@dataclass(frozen=True)
class ImagePart:
    """One uploaded image: a name for error messages and its undecoded bytes."""

    name: str
    data: bytes


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "payload_too_large", f"request body exceeds the limit of {limit} bytes")


async def _limited_stream(request: Request, limit: int) -> AsyncIterator[bytes]:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise _too_large(limit)
        yield chunk


async def _read_raw(request: Request, limit: int) -> list[ImagePart]:
    chunks = [chunk async for chunk in _limited_stream(request, limit)]
    data = b"".join(chunks)
    if not data:
        raise ApiError(400, "empty_body", "request body is empty; send image bytes")
    return [ImagePart("body", data)]


async def _read_multipart(request: Request, limit: int, max_images: int) -> list[ImagePart]:
    parser = MultiPartParser(
        request.headers,
        _limited_stream(request, limit),
        max_files=float("inf"),  # the body limit bounds the parts; too many images get 413 below
        max_fields=1000,
        max_part_size=limit,
    )
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise ApiError(400, "malformed_multipart", f"malformed multipart body: {exc}") from exc
    try:
        uploads = [
            (field, value)
            for field, value in form.multi_items()
            if field in FILE_FIELDS and isinstance(value, UploadFile)
        ]
        if not uploads:
            raise ApiError(
                400, "no_file", "no image found: send multipart fields 'file' or 'files'"
            )
        if len(uploads) > max_images:
            raise ApiError(
                413,
                "too_many_images",
                f"{len(uploads)} images in one request; the limit is {max_images}",
            )
        parts = []
        for position, (field, upload) in enumerate(uploads):
            label = f"{field}[{position}]" + (f" ({upload.filename})" if upload.filename else "")
            parts.append(ImagePart(label, await upload.read()))
        return parts
    finally:
        await form.close()


async def read_images(request: Request, max_body_bytes: int, max_images: int) -> list[ImagePart]:
    """Return the request's images in order, or raise ``ApiError`` (400, 413 or 415)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        return await _read_multipart(request, max_body_bytes, max_images)
    if content_type.startswith("image/") or content_type in RAW_CONTENT_TYPES:
        return await _read_raw(request, max_body_bytes)
    shown = content_type or "none"
    raise ApiError(
        415,
        "unsupported_media_type",
        f"content type {shown} is not accepted; use multipart/form-data, image/* "
        "or application/octet-stream",
    )
