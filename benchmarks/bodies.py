"""Request bodies encoded once, before the clock starts, so a request costs the client no Python work.

A multipart body is assembled by hand with a fixed boundary (what ``curl -F file=@photo.jpg`` sends),
so the load generator posts plain bytes with a matching content type instead of building a form for
every request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

BodyKind = Literal["multipart", "raw"]
BODY_KINDS: tuple[BodyKind, ...] = ("multipart", "raw")
BOUNDARY = "resnet-serve-bench-7d4f2a"


@dataclass(frozen=True)
class EncodedBody:
    """One complete request body and the content type that describes it."""

    data: bytes
    content_type: str


def multipart(image: bytes, field: str = "file", filename: str = "photo.jpg") -> EncodedBody:
    """A ``multipart/form-data`` body holding one JPEG file part."""
    head = (
        f"--{BOUNDARY}\r\n"
        f'Content-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()
    return EncodedBody(head + image + tail, f"multipart/form-data; boundary={BOUNDARY}")


def raw(image: bytes) -> EncodedBody:
    """The JPEG bytes themselves as the body."""
    return EncodedBody(image, "image/jpeg")


def encode(images: list[bytes], kind: BodyKind) -> list[EncodedBody]:
    """Every image as a ready-to-send body of ``kind``."""
    build = multipart if kind == "multipart" else raw
    return [build(image) for image in images]
