"""Read the images of a /predict request: multipart parts or a raw body, within the size limits.

The body is consumed as a stream and refused with 413 as soon as it passes ``max_body_bytes``, so an
oversized upload is never held in memory whole. A body sent with ``Content-Encoding: gzip`` or
``deflate`` (tritonclient's ``request_compression_algorithm``) is decompressed as it streams, its
decompressed size held to the same limit: a small body that would inflate past it (a
decompression bomb) is a 413 once the limit is passed, never memory. Each piece of decompression is
bounded (``INFLATE_PIECE_BYTES``), and the event loop runs between pieces.
"""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import TypeVar

from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect

from app.edge.http_errors import ApiError
from app.serving.errors import TooManyImagesError
from app.serving.numbers import plain_count

FILE_FIELDS = ("file", "files")
RAW_CONTENT_TYPES = ("application/octet-stream",)
MAX_TEXT_FIELDS = 100
# zlib's window bits for each Content-Encoding accepted: gzip's header and trailer, or zlib's
# (HTTP's "deflate" is the zlib format, RFC 9110 section 8.4.1.2, as tritonclient sends it).
CONTENT_ENCODINGS = {
    "gzip": 16 + zlib.MAX_WBITS,
    "x-gzip": 16 + zlib.MAX_WBITS,
    "deflate": zlib.MAX_WBITS,
}
INFLATE_PIECE_BYTES = 1 << 18  # decompressed per step: a fraction of a millisecond of CPU
T = TypeVar("T")


@dataclass(frozen=True)
class ImagePart:
    """One uploaded image: a name for error messages and its undecoded bytes."""

    name: str
    data: bytes


def client_closed() -> ApiError:
    """Nobody reads this answer (nginx's 499); it exists for the log line and the metrics."""
    return ApiError(499, "client_closed_request", "client disconnected before the answer")


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "payload_too_large", f"request body exceeds the limit of {limit} bytes")


def content_encoding(request: Request) -> str | None:
    """The body's compression (``gzip`` or ``deflate``), None for none; 415 for any other."""
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("", "identity"):
        return None
    if encoding not in CONTENT_ENCODINGS:
        raise ApiError(
            415,
            "unsupported_content_encoding",
            f"content encoding {encoding} is not accepted; use gzip, deflate or none",
        )
    return encoding


async def _limited_stream(request: Request, limit: int) -> AsyncGenerator[bytes, None]:
    encoding = content_encoding(request)
    declared = request.headers.get("content-length")
    length = plain_count(declared)
    if length is not None and length > limit:
        raise _too_large(limit)
    received = 0
    try:
        chunks = request.stream()
        if encoding is not None:
            chunks = _inflated(chunks, CONTENT_ENCODINGS[encoding], limit)
        async for chunk in chunks:
            received += len(chunk)
            if received > limit:
                raise _too_large(limit)
            yield chunk
    except ClientDisconnect:
        raise client_closed() from None


async def _inflated(
    chunks: AsyncIterator[bytes], window_bits: int, limit: int
) -> AsyncGenerator[bytes, None]:
    """``chunks`` decompressed, never more than ``limit`` + 1 bytes of it (the caller's 413)."""
    inflater = zlib.decompressobj(window_bits)
    produced = 0
    try:
        async for chunk in chunks:
            pending = chunk
            while pending and not inflater.eof:
                piece = inflater.decompress(pending, min(INFLATE_PIECE_BYTES, limit + 1 - produced))
                pending = inflater.unconsumed_tail
                produced += len(piece)
                yield piece
                if produced > limit:
                    return
                await asyncio.sleep(0)  # the event loop runs between pieces
            if inflater.eof and (pending or inflater.unused_data):
                raise ApiError(400, "invalid_compressed_body", "data after the compressed body")
    except zlib.error as exc:
        raise ApiError(
            400, "invalid_compressed_body", f"body is not valid compressed data: {exc}"
        ) from None
    if not inflater.eof:
        raise ApiError(400, "invalid_compressed_body", "the compressed body ends early")


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refused with 413 as soon as it passes ``limit`` bytes."""
    return b"".join([chunk async for chunk in _limited_stream(request, limit)])


@contextlib.asynccontextmanager
async def upload_deadline(timeout_s: float) -> AsyncIterator[None]:
    """408 if the body is not in within ``timeout_s``: stalled, trickling or shorter than declared."""
    try:
        async with asyncio.timeout(timeout_s) as upload:
            yield
    except TimeoutError:
        if not upload.expired():
            raise
        raise ApiError(
            408,
            "upload_timeout",
            f"request body not received within {timeout_s}s",
            {"Connection": "close"},
        ) from None


async def until_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Await ``work`` (after the body has been read) but cancel it if the client disconnects, so
    its images are dropped from the decode pool and the queue instead of occupying them for nobody."""
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


async def _read_raw(request: Request, limit: int) -> list[ImagePart]:
    data = await read_body(request, limit)
    if not data:
        raise ApiError(400, "empty_body", "request body is empty; send image bytes")
    return [ImagePart("body", data)]


async def _read_multipart(request: Request, limit: int, max_images: int) -> list[ImagePart]:
    parser = MultiPartParser(
        request.headers,
        _limited_stream(request, limit),
        max_files=max_images,
        max_fields=MAX_TEXT_FIELDS,
        max_part_size=limit,
    )
    parser.spool_max_size = limit  # parts are read straight back: keep them in memory, not in /tmp
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        if exc.message.startswith("Too many files"):
            raise TooManyImagesError(f"more than {max_images}", max_images) from exc
        raise ApiError(400, "malformed_multipart", f"malformed multipart body: {exc}") from exc
    try:
        uploads = [(field, value) for field, value in form.multi_items() if field in FILE_FIELDS]
        if not uploads:
            raise ApiError(
                400, "no_file", "no image found: send multipart fields 'file' or 'files'"
            )
        files: list[tuple[str, UploadFile]] = []
        for field, value in uploads:
            if not isinstance(value, UploadFile):
                raise ApiError(
                    400,
                    "no_file",
                    f"field '{field}' holds text, not a file: send it with a filename "
                    f"(curl -F {field}=@photo.jpg)",
                )
            files.append((field, value))
        parts = []
        for position, (field, upload) in enumerate(files):
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
