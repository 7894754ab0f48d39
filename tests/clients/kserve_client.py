"""Drive a server with KServe's own Python SDK, REST and gRPC, and print what it saw as JSON.

A script run in its own process, not a test module: kserve's generated ``grpc_predict_v2_pb2`` and
tritonclient's ``service_pb2`` both register the protobuf package ``inference``, so importing both
in one process fails ("duplicate symbol 'inference.ServerLiveRequest'"), and the test workers
import tritonclient. It imports nothing from ``app`` or ``tests`` for the same reason.

    python tests/clients/kserve_client.py --rest http://127.0.0.1:8000 --grpc 127.0.0.1:8001 \
        --model demo a.jpg b.jpg

prints ``{"rest": {...}, "grpc": {...}}``: health, model readiness, each output of one inference
over the images (name, datatype, shape, values), the top-2 classification strings, and the error
raised for a model that does not exist.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np

# Importing kserve parses the command line (kserve/model_server.py calls parse_known_args), where
# its own options (--grpc_port, --model_name, ...) reject or swallow this script's: it sees none.
ARGV, sys.argv[1:] = sys.argv[1:], []
from kserve import (  # noqa: E402
    InferenceGRPCClient,
    InferenceRESTClient,
    InferInput,
    InferRequest,
    InferResponse,
    RESTConfig,
)
from kserve.protocol.infer_type import RequestedOutput  # noqa: E402

MISSING_MODEL = "no-such-model"


def image_request(model: str, images: list[bytes], classification: int = 0) -> InferRequest:
    tensor = InferInput("IMAGE", [len(images)], "BYTES")
    tensor.set_data_from_numpy(np.array(images, dtype=np.object_), binary_data=True)
    outputs = None
    if classification:
        outputs = [RequestedOutput("PROBABILITIES", {"classification": classification})]
    return InferRequest(model_name=model, infer_inputs=[tensor], request_outputs=outputs)


def describe(response: InferResponse) -> dict[str, Any]:
    outputs = {}
    for output in response.outputs:
        values = output.as_numpy()
        if values.dtype == np.object_:
            values = np.vectorize(lambda v: v.decode() if isinstance(v, bytes) else v)(values)
        outputs[output.name] = {
            "datatype": output.datatype,
            "shape": list(output.shape),
            "data": values.tolist(),
        }
    return {"model_name": response.model_name, "outputs": outputs}


def error_of(exc: BaseException) -> dict[str, Any]:
    found: dict[str, Any] = {"type": type(exc).__name__, "message": str(exc)[:500]}
    if isinstance(exc, httpx.HTTPStatusError):
        found["status"] = exc.response.status_code
    if isinstance(exc, grpc.aio.AioRpcError):
        found["status"] = exc.code().name
        found["message"] = exc.details()
    return found


async def attempt(call) -> dict[str, Any]:
    """``{"value": ...}`` or ``{"error": {...}}``: every check is reported, none stops the rest."""
    try:
        value = await call()
    except Exception as exc:
        return {"error": error_of(exc)}
    return {"value": describe(value) if isinstance(value, InferResponse) else value}


async def over_rest(base_url: str, model: str, images: list[bytes]) -> dict[str, Any]:
    client = InferenceRESTClient(RESTConfig(protocol="v2", retries=0, timeout=60))
    try:
        return {
            "live": await attempt(lambda: client.is_server_live(base_url)),
            "ready": await attempt(lambda: client.is_server_ready(base_url)),
            "model_ready": await attempt(lambda: client.is_model_ready(base_url, model)),
            "missing_model_ready": await attempt(
                lambda: client.is_model_ready(base_url, MISSING_MODEL)
            ),
            "infer": await attempt(
                lambda: client.infer(base_url, image_request(model, images), model_name=model)
            ),
            "classify": await attempt(
                lambda: client.infer(base_url, image_request(model, images, 2), model_name=model)
            ),
            "missing_model_infer": await attempt(
                lambda: client.infer(
                    base_url, image_request(MISSING_MODEL, images), model_name=MISSING_MODEL
                )
            ),
        }
    finally:
        await client.close()


async def over_grpc(url: str, model: str, images: list[bytes]) -> dict[str, Any]:
    client = InferenceGRPCClient(url=url, retries=0, timeout=60)
    try:
        return {
            "live": await attempt(client.is_server_live),
            "ready": await attempt(client.is_server_ready),
            "model_ready": await attempt(lambda: client.is_model_ready(model)),
            "missing_model_ready": await attempt(lambda: client.is_model_ready(MISSING_MODEL)),
            "infer": await attempt(lambda: client.infer(image_request(model, images))),
            "classify": await attempt(lambda: client.infer(image_request(model, images, 2))),
            "missing_model_infer": await attempt(
                lambda: client.infer(image_request(MISSING_MODEL, images))
            ),
        }
    finally:
        await client.close()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    images = [Path(p).read_bytes() for p in args.images]
    results: dict[str, Any] = {}
    if args.rest:
        results["rest"] = await over_rest(args.rest, args.model, images)
    if args.grpc:
        results["grpc"] = await over_grpc(args.grpc, args.model, images)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rest", help="base URL of the HTTP endpoint, http://host:port")
    parser.add_argument("--grpc", help="host:port of the gRPC endpoint")
    parser.add_argument("--model", default="demo")
    parser.add_argument("images", nargs="+", help="encoded image files, sent as one IMAGE batch")
    args = parser.parse_args(ARGV)
    # The SDK logs each failed call with its traceback; the expected failures are in the JSON.
    logging.getLogger("kserve").setLevel(logging.CRITICAL)
    json.dump(asyncio.run(run(args)), sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
