"""Request bodies encoded once, before the clock starts, so a request costs the client no Python work.

A multipart body is assembled by hand with a fixed boundary (what ``curl -F file=@photo.jpg`` sends),
so the load generator posts plain bytes with a matching content type instead of building a form for
every request. The Open Inference Protocol bodies (``/v2/models/<model>/infer``) carry encoded images
as the ``IMAGE`` ``BYTES`` input: base64 strings in JSON, or the binary tensor extension's 4-byte
length and bytes per image after a JSON header, one image per request or ``V2_BATCH`` (as Triton
clients send batches).

Each kind names its path and its images per request, so images/s and CPU per image stay per image.
A new transport's body (gRPC, once it exists) is one more entry in ``KINDS``.
"""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

BodyKind = Literal["multipart", "raw", "v2-json", "v2-binary", "v2-binary8"]
BOUNDARY = "resnet-serve-bench-7d4f2a"
PREDICT_PATH = "/predict"
V2_MODEL = "demo"  # the bundled model's name; --model-dir of another bundle changes the path
V2_BATCH = 8


@dataclass(frozen=True)
class EncodedBody:
    """One complete request body, the content type (and other headers) that describe it, where it
    goes and how many images it holds."""

    data: bytes
    content_type: str
    path: str = PREDICT_PATH
    images: int = 1
    headers: tuple[tuple[str, str], ...] = ()


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


def v2_path(model: str = V2_MODEL) -> str:
    return f"/v2/models/{model}/infer"


def v2_json(images: list[bytes], model: str = V2_MODEL) -> EncodedBody:
    """A v2 JSON body: ``IMAGE`` as base64 strings, the classification extension's top 5."""
    header = {
        "inputs": [
            {
                "name": "IMAGE",
                "datatype": "BYTES",
                "shape": [len(images)],
                "data": [base64.b64encode(image).decode() for image in images],
            }
        ],
        "outputs": [{"name": "PROBABILITIES", "parameters": {"classification": 5}}],
    }
    return EncodedBody(json.dumps(header).encode(), "application/json", v2_path(model), len(images))


def v2_binary(images: list[bytes], model: str = V2_MODEL) -> EncodedBody:
    """A v2 body with the binary tensor extension, as ``tritonclient`` sends it: a JSON header,
    then each image as a 4-byte little-endian length and its bytes; binary outputs."""
    tensor = b"".join(struct.pack("<I", len(image)) + image for image in images)
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "IMAGE",
                    "datatype": "BYTES",
                    "shape": [len(images)],
                    "parameters": {"binary_data_size": len(tensor)},
                }
            ],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    return EncodedBody(
        header + tensor,
        "application/octet-stream",
        v2_path(model),
        len(images),
        (("Inference-Header-Content-Length", str(len(header))),),
    )


def _groups(images: list[bytes], size: int) -> list[list[bytes]]:
    """``images`` in groups of ``size``, wrapping round so every group is full."""
    return [[images[(i + j) % len(images)] for j in range(size)] for i in range(len(images))]


# Each kind: the images and the served model's name -> its bodies.
KINDS: dict[BodyKind, Callable[[list[bytes], str], list[EncodedBody]]] = {
    "multipart": lambda images, model: [multipart(image) for image in images],
    "raw": lambda images, model: [raw(image) for image in images],
    "v2-json": lambda images, model: [v2_json([image], model) for image in images],
    "v2-binary": lambda images, model: [v2_binary([image], model) for image in images],
    "v2-binary8": lambda images, model: [
        v2_binary(group, model) for group in _groups(images, V2_BATCH)
    ],
}
BODY_KINDS: tuple[BodyKind, ...] = tuple(KINDS)
PREDICT_KINDS: tuple[BodyKind, ...] = ("multipart", "raw")  # what /predict-only peers take


def encode(images: list[bytes], kind: BodyKind, model: str = V2_MODEL) -> list[EncodedBody]:
    """Every image (or group of images) as a ready-to-send body of ``kind``; ``model`` names the
    served model in a v2 path."""
    return KINDS[kind](images, model)
