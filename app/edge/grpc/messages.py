"""Triton's gRPC messages to and from the transport-free Open Inference Protocol objects.

The generated messages are Triton's own (``tritonclient.grpc``: ``service_pb2``, ``model_config_pb2``),
compiled from the ``.proto`` files every Triton and KServe gRPC client is built from, so field numbers
match by construction. Metadata, configuration and statistics are the pydantic objects the HTTP routes
answer, converted by protobuf's own JSON mapping, so both transports say the same thing.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from google.protobuf import json_format
from pydantic import BaseModel
from tritonclient.grpc import service_pb2

from app.edge.open_inference.codec import (
    IMAGE_INPUT,
    InferRequest,
    OutputRequest,
    check_declared,
    output_tensors,
    pixels_from,
    read_raw,
    requested_outputs,
)
from app.serving.errors import InvalidInputError
from app.serving.service import Classification

CLASSIFICATION = "classification"  # the output parameter of Triton's classification extension


def as_message(model: BaseModel, message: Any) -> Any:
    """``message`` filled from ``model``'s JSON form (protobuf's JSON mapping of the same names)."""
    return json_format.ParseDict(model.model_dump(mode="json"), message)


def infer_request(
    message: service_pb2.ModelInferRequest, image_shape: tuple[int, ...], max_images: int
) -> InferRequest:
    """A ``ModelInferRequest`` read as the HTTP body is: what it declares is checked against the
    model and ``max_images`` before its data is read. ``InvalidInputError`` or
    ``TooManyImagesError``."""
    if len(message.inputs) != 1:
        raise InvalidInputError(
            f"exactly one input is expected: IMAGE or PIXELS, got {len(message.inputs)}"
        )
    tensor = message.inputs[0]
    shape = list(tensor.shape)
    check_declared(tensor.name, tensor.datatype, shape, image_shape, max_images)
    outputs = _outputs(message)
    raw = message.raw_input_contents
    if len(raw) > 1:
        raise InvalidInputError(f"raw_input_contents holds {len(raw)} tensors for one input")
    if raw:
        return InferRequest(
            message.id or None, read_raw(tensor.name, tensor.datatype, shape, raw[0]), outputs
        )
    return InferRequest(message.id or None, _contents(tensor, shape), outputs)


def _contents(
    tensor: service_pb2.ModelInferRequest.InferInputTensor, shape: list[int]
) -> list[bytes] | torch.Tensor:
    """A tensor sent in ``contents`` (typed repeated fields) rather than raw bytes."""
    contents = tensor.contents
    if tensor.name == IMAGE_INPUT:
        images = list(contents.bytes_contents)
        if len(images) != shape[0]:
            raise InvalidInputError(f"IMAGE has {len(images)} elements for shape {shape}")
        return images
    values = contents.fp32_contents if tensor.datatype == "FP32" else contents.uint_contents
    count = math.prod(shape)  # the shape passed check_declared: within the limits
    if len(values) != count:
        raise InvalidInputError(f"PIXELS has {len(values)} values for shape {shape}")
    return pixels_from(np.asarray(values, dtype=np.float32), shape)


def _outputs(message: service_pb2.ModelInferRequest) -> list[OutputRequest]:
    asked = []
    for output in message.outputs:
        classification = None
        if CLASSIFICATION in output.parameters:
            classification = output.parameters[CLASSIFICATION].int64_param
            if classification < 1:
                raise InvalidInputError("classification must be a positive integer")
        asked.append(OutputRequest(output.name, binary=True, classification=classification))
    return requested_outputs(asked, default_binary=True)


def infer_response(
    model_name: str,
    version: str,
    request: InferRequest,
    results: list[Classification],
    labels: list[str],
) -> service_pb2.ModelInferResponse:
    """The answer as Triton sends it: each output's bytes in ``raw_output_contents``, in order."""
    response = service_pb2.ModelInferResponse(
        model_name=model_name, model_version=version, id=request.request_id or ""
    )
    for tensor in output_tensors(request, results, labels):
        response.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
        assert isinstance(tensor.data, bytes)  # every output is asked for as binary
        response.raw_output_contents.append(tensor.data)
    return response
