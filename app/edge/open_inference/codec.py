"""Open Inference Protocol (KServe v2 / Triton REST) bodies: requests in, responses out.

Inputs the model accepts (one per request):

- ``IMAGE``: ``BYTES`` ``[N]`` or ``[N,1]``, N encoded images (JPEG, PNG, ...), decoded like /predict's uploads.
  In JSON each element is a base64 string (JSON cannot carry raw bytes); with the binary tensor
  extension each is a 4-byte little-endian length and the bytes, as Triton serialises ``BYTES``.
- ``PIXELS``: ``UINT8`` or ``FP32`` ``[N,3,S,S]``, RGB pixels 0..255 already at the model's input size
  (no resize or crop; the model's normalisation is applied as for every image).

Outputs, each as JSON or, when asked (``binary_data``), as raw bytes after the JSON header, in the
order the outputs are listed; a request that names none gets both:

- ``PROBABILITIES``: ``FP32`` ``[N,num_classes]``, little-endian floats in binary. With the
  classification extension (``"classification": k``) it becomes ``BYTES`` ``[N,k]`` of Triton's
  ``"score:index:label"`` strings.
- ``ABSTAINED``: ``BOOL`` ``[N,1]``, one byte per element in binary: /predict's ``abstained``.

The bodies are the pydantic models of ``app.wire.open_inference``: a request's JSON structure is
validated by ``V2InferRequest``, an answer is a ``V2InferResponse``. Read by hand here are only an
input's ``data`` and the binary tensor extension's bytes. A request is read off the event loop
(``parse_request`` blocks), and what it declares is checked against the limits before its data is
read: a body within the size limit may declare millions of numbers (``app.edge.open_inference.json_numbers``).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from pydantic import ValidationError

from app.edge.open_inference.json_numbers import (
    TooManyValuesError,
    count_numbers,
    read_numbers,
    skim,
)
from app.serving.errors import InvalidInputError, TooManyImagesError
from app.serving.numbers import plain_count
from app.serving.service import Classification
from app.wire.open_inference import (
    V2InferInput,
    V2InferRequest,
    V2InferResponse,
    V2OutputParameters,
    V2OutputRequestParameters,
    V2OutputTensor,
)

HEADER_LENGTH = "inference-header-content-length"
IMAGE_INPUT, PIXELS_INPUT = "IMAGE", "PIXELS"
# The model's outputs, in the order a request that names none receives them.
PROBABILITIES, ABSTAINED = "PROBABILITIES", "ABSTAINED"
OUTPUTS = (PROBABILITIES, ABSTAINED)
PIXEL_TYPES = {"UINT8": np.uint8, "FP32": np.float32}
ELEMENT_BYTES = {"UINT8": 1, "FP32": 4}


@dataclass(frozen=True)
class OutputRequest:
    """An output asked for, its ``binary_data`` resolved against the request's default."""

    name: str
    binary: bool
    classification: int | None = None


@dataclass(frozen=True)
class InferRequest:
    """A parsed request: encoded images (``IMAGE``) or a pixel tensor (``PIXELS``), and how to
    answer."""

    request_id: str | None
    inputs: list[bytes] | torch.Tensor
    outputs: list[OutputRequest]

    @property
    def count(self) -> int:
        return len(self.inputs)


def _invalid(message: str) -> InvalidInputError:
    return InvalidInputError(message)


def max_header_values(image_shape: tuple[int, ...], max_images: int) -> int:
    """The most JSON values a header's structure may hold: a ``PIXELS`` tensor nested to rows
    holds about ``N x (3S + 4)`` of them (each row one ``NumberText``); twice that, and room for
    the rest of the header."""
    return 2 * max_images * math.prod(image_shape[:-1]) + 1024


def _split_body(body: bytes, header_length: str | None, max_values: int) -> tuple[Any, bytes]:
    """The JSON header (its long arrays of numbers unread) and the binary tail (empty without
    the binary extension)."""
    if header_length is None:
        size = len(body)
    elif (length := plain_count(header_length)) is not None and length <= len(body):
        size = length
    else:
        raise _invalid(f"Inference-Header-Content-Length {header_length!r} does not fit the body")
    try:
        header = skim(body[:size], max_values)
    except json.JSONDecodeError as exc:
        raise _invalid(f"request header is not valid JSON: {exc}") from None
    except TooManyValuesError as exc:
        raise _invalid(str(exc)) from None
    except (UnicodeDecodeError, ValueError, RecursionError):
        # Not UTF-8, an integer of thousands of digits, or nesting deeper than Python recurses.
        raise _invalid(
            "request header is not valid JSON, or nests or counts beyond reason"
        ) from None
    if not isinstance(header, dict):
        raise _invalid("request header must be a JSON object")
    return header, body[size:]


def _validated(header: dict[str, Any]) -> V2InferRequest:
    try:
        return V2InferRequest.model_validate(header)
    except ValidationError as exc:
        raise _invalid(_first_error(exc)) from None


def _first_error(error: ValidationError) -> str:
    """The protocol's words for the first thing wrong with a header's structure; pydantic's,
    after the field's path, for anything else."""
    first = error.errors(include_url=False)[0]
    loc, value = first["loc"], first["input"]
    if loc == ("id",):
        return "id must be a string"
    if loc[-1:] == ("parameters",):
        return "parameters must be a JSON object"
    if loc[-1:] == ("classification",):
        return "classification must be a positive integer"
    if loc[:1] == ("inputs",):
        if len(loc) <= 2:  # not a list of one, or an input that is not an object
            return f"exactly one input is expected: {IMAGE_INPUT} or {PIXELS_INPUT}"
        if loc[2] == "name":
            name = None if first["type"] == "missing" else value
            return f"unknown input {name!r}: expected {IMAGE_INPUT} or {PIXELS_INPUT}"
        if loc[2] == "shape":
            return "input shape must be a list of non-negative integers"
    if loc == ("outputs",):
        return "outputs must be a list"
    if loc[:1] == ("outputs",) and (len(loc) == 2 or loc[2] == "name"):
        return f"unknown output: the model has {', '.join(OUTPUTS)}"
    return f"{'.'.join(map(str, loc))}: {first['msg']}"


def parse_request(
    body: bytes, header_length: str | None, image_shape: tuple[int, ...], max_images: int
) -> InferRequest:
    """Read a request's tensor, checking first what it declares (its input, datatype, shape and
    sizes) against the model and ``max_images``, so that a request over the limits is refused
    before any work that grows with its body. Blocks for as long as the body is large: call it
    off the event loop. Raises ``InvalidInputError`` (400) or ``TooManyImagesError`` (413)."""
    header, binary = _split_body(body, header_length, max_header_values(image_shape, max_images))
    request = _validated(header)
    tensor = request.inputs[0]
    shape = tensor.shape
    check_declared(tensor.name, tensor.datatype, shape, image_shape, max_images)
    outputs = _outputs(request)
    raw = _tensor_bytes(tensor, binary)
    if raw is not None:
        return InferRequest(request.id, read_raw(tensor.name, tensor.datatype, shape, raw), outputs)
    if tensor.name == IMAGE_INPUT:
        return InferRequest(request.id, _json_bytes(tensor, shape[0]), outputs)
    try:
        found = count_numbers(tensor.data)
    except ValueError:
        raise _invalid(f"{PIXELS_INPUT} data must be numbers") from None
    if found != math.prod(shape):
        raise _invalid(f"{PIXELS_INPUT} has {found} values for shape {shape}")
    try:
        array = read_numbers(tensor.data, found)
    except (ValueError, OverflowError):
        raise _invalid(f"{PIXELS_INPUT} data must be numbers") from None
    return InferRequest(request.id, pixels_from(array, shape), outputs)


def check_declared(
    name: str, datatype: str, shape: list[int], image_shape: tuple[int, ...], max_images: int
) -> None:
    """What an input declares, checked before any of its data is read (every transport's first
    step): ``TooManyImagesError`` over ``max_images``, else ``InvalidInputError`` unless it is
    ``IMAGE`` ``BYTES`` ``[N]`` or ``[N,1]``, or ``PIXELS`` ``UINT8``/``FP32`` ``[N,3,S,S]``."""
    if shape and shape[0] > max_images:
        raise TooManyImagesError(str(shape[0]), max_images)
    if name == IMAGE_INPUT:
        # [N, 1] is how Triton's tools send it (its config's dims are [1]); [N] is plain KServe.
        if datatype != "BYTES" or not shape or shape[1:] not in ([], [1]) or shape[0] < 1:
            raise _invalid(f"{IMAGE_INPUT} must be BYTES with shape [N] or [N,1], N >= 1")
        return
    if name != PIXELS_INPUT:
        raise _invalid(f"unknown input {name!r}: expected {IMAGE_INPUT} or {PIXELS_INPUT}")
    expected = [shape[0] if shape else 0, *image_shape]
    if datatype not in PIXEL_TYPES or shape != expected or shape[0] < 1:
        raise _invalid(
            f"{PIXELS_INPUT} must be UINT8 or FP32 with shape [N,"
            f"{','.join(map(str, image_shape))}], got {datatype} {shape}"
        )


def read_raw(name: str, datatype: str, shape: list[int], raw: bytes) -> list[bytes] | torch.Tensor:
    """A declared-valid input's data from its raw bytes (the binary extension over HTTP,
    ``raw_input_contents`` over gRPC): Triton's length-prefixed ``BYTES``, or little-endian
    pixels."""
    if name == IMAGE_INPUT:
        return _binary_bytes(raw, shape[0])
    if len(raw) != math.prod(shape) * ELEMENT_BYTES[datatype]:
        raise _invalid(f"{PIXELS_INPUT} binary data does not match its shape")
    return pixels_from(
        np.frombuffer(raw, dtype=np.dtype(PIXEL_TYPES[datatype]).newbyteorder("<")), shape
    )


def pixels_from(array: np.ndarray, shape: list[int]) -> torch.Tensor:
    """Pixel values 0..255, any numeric dtype, as the uint8 tensor of ``shape``."""
    if not np.all(np.isfinite(array)) or array.min() < 0 or array.max() > 255:
        raise _invalid(f"{PIXELS_INPUT} values must be 0..255")
    return torch.from_numpy(np.rint(array).astype(np.uint8).reshape(shape))


def _tensor_bytes(tensor: V2InferInput, binary: bytes) -> bytes | None:
    size = tensor.parameters.binary_data_size if tensor.parameters else None
    if size is None:
        return None
    if size != len(binary):
        raise _invalid(f"binary_data_size {size} does not match the {len(binary)} bytes sent")
    return binary


def _binary_bytes(raw: bytes, count: int) -> list[bytes]:
    elements, offset = [], 0
    for _ in range(count):
        if offset + 4 > len(raw):
            raise _invalid("BYTES tensor data ends early")
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > len(raw):
            raise _invalid("BYTES tensor data ends early")
        elements.append(raw[offset : offset + length])
        offset += length
    if offset != len(raw):
        raise _invalid("BYTES tensor data is longer than its shape")
    return elements


def _json_bytes(tensor: V2InferInput, count: int) -> list[bytes]:
    data = tensor.data if isinstance(tensor.data, list) else []
    # Flat, or nested one level as an [N, 1] tensor may be written.
    flat = [item[0] if isinstance(item, list) and len(item) == 1 else item for item in data]
    strings = [item for item in flat if isinstance(item, str)]
    if len(strings) != count or len(data) != count:
        raise _invalid(f"{IMAGE_INPUT} data must be {count} base64 strings")
    try:
        return [base64.b64decode(item, validate=True) for item in strings]
    except binascii.Error:
        raise _invalid(f"{IMAGE_INPUT} data must be base64 strings") from None


def _outputs(request: V2InferRequest) -> list[OutputRequest]:
    default_binary = bool(request.parameters and request.parameters.binary_data_output)
    asked = []
    for output in request.outputs or []:
        parameters = output.parameters or V2OutputRequestParameters()
        binary = default_binary if parameters.binary_data is None else parameters.binary_data
        asked.append(OutputRequest(output.name, binary, parameters.classification))
    return requested_outputs(asked, default_binary)


def requested_outputs(asked: list[OutputRequest], default_binary: bool) -> list[OutputRequest]:
    """The outputs asked for, each at most once; none asked for means all of them."""
    if not asked:
        return [OutputRequest(name, default_binary) for name in OUTPUTS]
    names = [output.name for output in asked]
    if len(set(names)) != len(names):
        raise _invalid("each output may be asked for once")
    for output in asked:
        if output.name not in OUTPUTS:
            raise _invalid(f"unknown output: the model has {', '.join(OUTPUTS)}")
        if output.classification is not None and output.name != PROBABILITIES:
            raise _invalid(f"classification applies to {PROBABILITIES} only")
    return asked


TensorData = list[Any] | bytes  # JSON values, or the binary tensor extension's bytes


def _probabilities(
    output: OutputRequest, results: list[Classification], labels: list[str]
) -> tuple[str, list[int], TensorData]:
    """``FP32 [N,classes]``, or with the classification extension ``score:index:label`` strings;
    in the one form ``output`` asks for."""
    if output.classification:
        k = min(output.classification, len(labels))
        rows = [torch.topk(r.probabilities, k) for r in results]
        strings = [
            f"{score:f}:{index}:{labels[index]}"
            for scores, indices in rows
            for score, index in zip(scores.tolist(), indices.tolist(), strict=True)
        ]
        if not output.binary:
            return "BYTES", [len(results), k], strings
        encoded = b"".join(struct.pack("<I", len(s.encode())) + s.encode() for s in strings)
        return "BYTES", [len(results), k], encoded
    probabilities = torch.stack([r.probabilities for r in results]).numpy()
    shape = list(probabilities.shape)
    if output.binary:
        return "FP32", shape, probabilities.astype("<f4").tobytes()
    return "FP32", shape, probabilities.reshape(-1).tolist()


def _abstained(
    output: OutputRequest, results: list[Classification]
) -> tuple[str, list[int], TensorData]:
    """``BOOL [N,1]``: true where the answer abstains (``Classification.abstained``); one value
    per image is ``dims: [1]`` in Triton's configuration, which allows no empty dims."""
    flags = [r.abstained for r in results]
    return "BOOL", [len(flags), 1], bytes(flags) if output.binary else flags


@dataclass(frozen=True)
class OutputTensor:
    """One output of an answer, in the form its request asked for."""

    name: str
    datatype: str
    shape: list[int]
    data: TensorData


def output_tensors(
    request: InferRequest, results: list[Classification], labels: list[str]
) -> list[OutputTensor]:
    """The outputs ``request`` asked for, in its order: every transport's answer."""
    tensors = []
    for wanted in request.outputs:
        if wanted.name == PROBABILITIES:
            datatype, shape, data = _probabilities(wanted, results, labels)
        else:
            datatype, shape, data = _abstained(wanted, results)
        tensors.append(OutputTensor(wanted.name, datatype, shape, data))
    return tensors


def encode_response(
    model: str,
    version: str,
    request: InferRequest,
    results: list[Classification],
    labels: list[str],
) -> tuple[bytes, int | None]:
    """The HTTP response body, and the JSON header's length when binary data follows it."""
    outputs, binary = [], b""
    for tensor in output_tensors(request, results, labels):
        if isinstance(tensor.data, bytes):
            binary += tensor.data
            parameters = V2OutputParameters(binary_data_size=len(tensor.data))
            outputs.append(
                V2OutputTensor(
                    name=tensor.name,
                    datatype=tensor.datatype,
                    shape=tensor.shape,
                    parameters=parameters,
                )
            )
        else:
            outputs.append(
                V2OutputTensor(
                    name=tensor.name, datatype=tensor.datatype, shape=tensor.shape, data=tensor.data
                )
            )
    response = V2InferResponse(
        model_name=model, model_version=version, id=request.request_id, outputs=outputs
    )
    header = response.model_dump_json(exclude_none=True).encode()
    return header + binary, (len(header) if binary else None)
