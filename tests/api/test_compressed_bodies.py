"""Request bodies sent compressed (``Content-Encoding: gzip`` or ``deflate``), as tritonclient's
``request_compression_algorithm`` sends them: accepted, and held to the size limit decompressed."""

from __future__ import annotations

import base64
import gzip
import json
import time
import zlib

import httpx
import numpy as np
import pytest
import tritonclient.http as triton

from tests.conftest import DEMO_BUNDLE, ServerProcess, encode, known_image

MODEL = "demo"
LABELS = json.loads((DEMO_BUNDLE / "model.json").read_text())["labels"]
IMAGE = encode(known_image("star", 0))


def _infer_path(server: ServerProcess) -> str:
    return server.url + f"/v2/models/{MODEL}/infer"


def _json_body() -> bytes:
    tensor = {"name": "IMAGE", "shape": [1], "datatype": "BYTES"}
    tensor["data"] = [base64.b64encode(IMAGE).decode()]
    return json.dumps({"inputs": [tensor]}).encode()


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_tritonclient_compressed_requests_are_answered(
    demo_server: ServerProcess, algorithm: str
) -> None:
    client = triton.InferenceServerClient(demo_server.url.removeprefix("http://"))
    tensor = triton.InferInput("IMAGE", [1, 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[IMAGE]], dtype=np.object_))
    result = client.infer(MODEL, [tensor], request_compression_algorithm=algorithm)
    assert LABELS[int(result.as_numpy("PROBABILITIES").argmax())] == "star"


def test_a_gzip_raw_upload_to_predict_is_answered(demo_server: ServerProcess) -> None:
    response = httpx.post(
        demo_server.url + "/predict",
        content=gzip.compress(IMAGE),
        headers={"content-type": "image/png", "content-encoding": "gzip"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["results"][0]["predictions"][0]["label"] == "star"


def test_a_decompression_bomb_is_413_at_the_limit(demo_server: ServerProcess) -> None:
    bomb = gzip.compress(b"0" * (64 * 1024 * 1024), compresslevel=9)  # 64 MiB in ~64 KB
    started = time.monotonic()
    response = httpx.post(
        _infer_path(demo_server), content=bomb, headers={"content-encoding": "gzip"}
    )
    assert (response.status_code, response.json()) == (
        413,
        {"error": "request body exceeds the limit of 10485760 bytes"},
    )
    assert time.monotonic() - started < 5
    assert demo_server.get("/health/live").status_code == 200


@pytest.mark.parametrize(
    ("body", "encoding", "status", "words"),
    [
        (zlib.compress(_json_body()), "br", 415, "content encoding br is not accepted"),
        (b"not compressed at all", "gzip", 400, "not valid compressed data"),
        (gzip.compress(_json_body())[:-20], "gzip", 400, "ends early"),
        (gzip.compress(_json_body()) + b"tail", "gzip", 400, "data after the compressed body"),
    ],
)
def test_bad_compressed_bodies_are_refused_in_words(
    demo_server: ServerProcess, body: bytes, encoding: str, status: int, words: str
) -> None:
    response = httpx.post(
        _infer_path(demo_server), content=body, headers={"content-encoding": encoding}
    )
    assert response.status_code == status, response.text
    assert words in response.json()["error"]
