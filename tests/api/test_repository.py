"""Triton's model repository extension, driven by tritonclient over HTTP and gRPC: the index of
versions, explicit load of a newer one (or a refusal naming why), unload and load again."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException

from tests.api.test_versions import _publish
from tests.conftest import ServerProcess, encode, free_port, known_image

IMAGE = encode(known_image("star", 0))


def _infer(client) -> str:
    module = triton_grpc if isinstance(client, triton_grpc.InferenceServerClient) else triton_http
    tensor = module.InferInput("IMAGE", [1, 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[IMAGE]], dtype=np.object_))
    result = client.infer("demo", [tensor])
    response = result.get_response()
    return (
        response.model_version if hasattr(response, "model_version") else response["model_version"]
    )


def _index(client) -> list[tuple[str, str, str]]:
    if isinstance(client, triton_grpc.InferenceServerClient):
        models = client.get_model_repository_index(as_json=True).get("models", [])
    else:
        models = client.get_model_repository_index()
    return [(m["name"], m["version"], m.get("state", "")) for m in models]


@pytest.fixture
def versions(tmp_path: Path) -> Path:
    model_dir = tmp_path / "demo"
    model_dir.mkdir()
    _publish(model_dir, 1)
    return model_dir


@pytest.mark.parametrize("transport", ["http", "grpc"])
def test_index_load_unload_through_tritonclient(
    start_server, versions: Path, transport: str
) -> None:
    server: ServerProcess = start_server(model_dir=versions, grpc_port=free_port()).wait_ready()
    client = (
        triton_grpc.InferenceServerClient(server.grpc_url)
        if transport == "grpc"
        else triton_http.InferenceServerClient(server.url.removeprefix("http://"))
    )
    assert _index(client) == [("demo", "1", "READY")]
    _publish(versions, 2)
    assert _index(client) == [("demo", "1", "READY"), ("demo", "2", "UNAVAILABLE")]
    client.load_model("demo")  # the newest version, warmed up, then swapped in
    assert _index(client) == [("demo", "1", "UNAVAILABLE"), ("demo", "2", "READY")]
    assert _infer(client) == "2"

    client.unload_model("demo")
    assert not client.is_model_ready("demo")
    assert server.get("/v2/health/ready").status_code == 503
    with pytest.raises(InferenceServerException) as refused:
        _infer(client)
    assert "unloaded" in str(refused.value)
    client.load_model("demo")
    assert client.is_model_ready("demo") and _infer(client) == "2"

    _publish(versions, 3, corrupt=True)
    with pytest.raises(InferenceServerException) as error:
        client.load_model("demo")
    assert "version 3 was refused" in str(error.value)
    assert _infer(client) == "2"  # the served version goes on
    assert ("demo", "3", "UNAVAILABLE") in _index(client)
    with pytest.raises(InferenceServerException):
        client.load_model("resnet50")


def test_the_repository_routes_need_a_key_when_keys_are_set(start_server, versions: Path) -> None:
    server = start_server(model_dir=versions, api_keys="k-repo").wait_ready()
    index = server.url + "/v2/repository/index"
    assert httpx.post(index).status_code == 401
    assert httpx.post(server.url + "/v2/repository/models/demo/unload").status_code == 401
    keyed = httpx.post(index, headers={"Authorization": "Bearer k-repo"}, json={"ready": True})
    assert keyed.status_code == 200
    assert keyed.json() == [{"name": "demo", "version": "1", "state": "READY", "reason": ""}]
