"""The Open Inference Protocol as KServe's own Python SDK speaks it, over REST and over gRPC.

The SDK runs in a subprocess (tests/clients/kserve_client.py): its generated protobuf module and
tritonclient's register the same package, ``inference``, and cannot be imported into one process,
and other test files in the same pytest worker import tritonclient.grpc.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DEMO_BUNDLE, REPO, ServerProcess, encode, known_image

MODEL = json.loads((DEMO_BUNDLE / "model.json").read_text())
SHAPES = ["circle", "star", "cross"]
SCRIPT = REPO / "tests" / "clients" / "kserve_client.py"
TRANSPORTS = ["rest", "grpc"]


@pytest.fixture(scope="module")
def seen(demo_server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """What the SDK's REST and gRPC clients reported for the SHAPES images, by transport."""
    directory = tmp_path_factory.mktemp("kserve-images")
    paths: list[Path] = []
    for seed, name in enumerate(SHAPES):
        paths.append(directory / f"{name}.jpg")
        paths[-1].write_bytes(encode(known_image(name, seed)))
    command = [sys.executable, str(SCRIPT), "--rest", demo_server.url, "--grpc"]
    command += [demo_server.grpc_url, "--model", MODEL["name"], *map(str, paths)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, cwd=REPO)
    assert done.returncode == 0, f"{done.stderr}\nserver log:\n{demo_server.logs()}"
    return json.loads(done.stdout)


def _value(seen: dict[str, Any], transport: str, check: str) -> Any:
    result = seen[transport][check]
    assert "error" not in result, f"{transport} {check}: {result['error']}"
    return result["value"]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_server_live_ready_and_model_ready(seen, transport: str) -> None:
    assert _value(seen, transport, "live") is True
    assert _value(seen, transport, "ready") is True
    assert _value(seen, transport, "model_ready") is True


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_images_give_probabilities_and_abstained_of_the_declared_shapes(
    seen, transport: str
) -> None:
    response = _value(seen, transport, "infer")
    assert response["model_name"] == MODEL["name"]
    outputs = response["outputs"]
    assert {name: (o["datatype"], o["shape"]) for name, o in outputs.items()} == {
        "PROBABILITIES": ("FP32", [len(SHAPES), MODEL["num_classes"]]),
        "ABSTAINED": ("BOOL", [len(SHAPES), 1]),
    }
    rows = outputs["PROBABILITIES"]["data"]
    assert [MODEL["labels"][row.index(max(row))] for row in rows] == SHAPES
    assert all(abs(sum(row) - 1) < 1e-4 for row in rows)
    assert outputs["ABSTAINED"]["data"] == [[False]] * len(SHAPES)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_classification_parameter_answers_score_index_label(seen, transport: str) -> None:
    output = _value(seen, transport, "classify")["outputs"]["PROBABILITIES"]
    assert (output["datatype"], output["shape"]) == ("BYTES", [len(SHAPES), 2])
    for row, name in zip(output["data"], SHAPES, strict=True):
        score, index, label = row[0].split(":")
        assert label == name and MODEL["labels"][int(index)] == name and 0 < float(score) <= 1


def test_unknown_model_is_not_found_over_rest(seen) -> None:
    # The SDK's v2 is_model_ready answers False for any non-2xx status rather than raising.
    assert seen["rest"]["missing_model_ready"] == {"value": False}
    error = seen["rest"]["missing_model_infer"]["error"]
    assert (error["type"], error["status"]) == ("HTTPStatusError", 404)
    assert "no-such-model" in error["message"]


def test_unknown_model_is_not_found_over_grpc(seen) -> None:
    for check in ("missing_model_ready", "missing_model_infer"):
        error = seen["grpc"][check]["error"]
        assert (error["type"], error["status"]) == ("AioRpcError", "NOT_FOUND"), check
        assert "no-such-model" in error["message"], check
