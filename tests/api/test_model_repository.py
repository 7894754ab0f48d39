"""Several models side by side from one repository (``MODEL_REPOSITORY``), as a user runs them:
each under its folder's name with its own batch limits and version policy, chosen by name on every
route and transport, listed by /model and the repository index, unloaded and loaded one at a time,
and a model that does not fit refused while the others serve."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
from tritonclient.utils import InferenceServerException

from app.client.client import ResnetClient
from tests.conftest import (
    CLI,
    DEMO_BUNDLE,
    ServerProcess,
    encode,
    free_port,
    known_image,
    ready_server,
    write_bundle,
)
from tests.waiting import wait_for

STAR = encode(known_image("star", 0))
RESNET18_MB = 42.7  # 11.2 M float32 weights, in the MB (2**20 bytes) that MODEL_MEMORY_MB counts


def _copy_demo(folder: Path) -> None:
    folder.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(DEMO_BUNDLE, folder)


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``shapes``: the demo model at versions 1 and 2, both served (latest 2), batches of up to 2;
    ``tiny``: a 3-class bundle of its own, served as version 1 with the server's limits."""
    root = tmp_path_factory.mktemp("repository")
    _copy_demo(root / "shapes" / "1")
    _copy_demo(root / "shapes" / "2")
    (root / "shapes" / "config.json").write_text(
        json.dumps({"max_batch_size": 2, "version_policy": {"latest": {"num_versions": 2}}})
    )
    write_bundle(root / "tiny", ["left", "middle", "right"], input_size=32)
    return root


@pytest.fixture(scope="module")
def server(repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    log_dir = tmp_path_factory.mktemp("repository-server")
    yield from ready_server(
        log_dir,
        model_repository=repository,
        model_poll_s=0.2,
        # Room for the three versions served and no fourth.
        model_memory_mb=int(3.5 * RESNET18_MB),
        max_batch_size=4,
        grpc_port=free_port(),
    )


def _predict(server: ServerProcess, model: str | None) -> httpx.Response:
    params = {"model": model} if model else {}
    return httpx.post(server.url + "/predict", params=params, files={"file": STAR}, timeout=30)


def test_each_model_answers_under_its_own_name(server: ServerProcess) -> None:
    shapes = _predict(server, "shapes").json()
    assert (shapes["model"], shapes["version"]) == ("shapes", "2")
    assert shapes["results"][0]["predictions"][0]["label"] == "star"
    tiny = _predict(server, "tiny").json()
    assert tiny["model"] == "tiny"
    assert {p["label"] for p in tiny["results"][0]["predictions"]} == {"left", "middle", "right"}


def test_a_server_of_several_models_asks_which(server: ServerProcess) -> None:
    response = _predict(server, None)
    assert response.status_code == 404
    assert response.json()["error"] == {
        "code": "model_not_found",
        "message": "name a model: this server serves shapes, tiny",
    }
    assert _predict(server, "cats").json()["error"]["message"] == (
        "unknown model cats; this server serves shapes, tiny"
    )


def test_model_lists_every_model_and_describes_the_one_named(server: ServerProcess) -> None:
    first = server.get("/model").json()
    assert (first["name"], first["models"]) == ("shapes", ["shapes", "tiny"])
    tiny = server.get("/model", params={"model": "tiny"}).json()
    assert (tiny["name"], tiny["labels"], tiny["input_size"]) == (
        "tiny",
        ["left", "middle", "right"],
        32,
    )
    with ResnetClient(server.url, model="tiny") as client:
        assert client.model().name == "tiny"
        assert client.predict(STAR).model == "tiny"


def test_each_model_has_its_own_batch_limit_and_versions(server: ServerProcess) -> None:
    assert server.get("/v2/models/shapes/config").json()["max_batch_size"] == 2
    assert server.get("/v2/models/tiny/config").json()["max_batch_size"] == 4
    assert server.get("/v2/models/shapes").json()["versions"] == ["1", "2"]
    for version in ("1", "2"):
        body = {
            "inputs": [{"name": "IMAGE", "shape": [1], "datatype": "BYTES", "data": ["x"]}],
        }
        url = f"{server.url}/v2/models/shapes/versions/{version}/ready"
        assert httpx.get(url).status_code == 200
        bad = httpx.post(f"{server.url}/v2/models/shapes/versions/{version}/infer", json=body)
        assert bad.status_code == 400  # not an image: the route ran, on that version
    for unknown in ("3", "01", "\u00b2"):  # a version is named as its folder is
        assert (
            httpx.get(f"{server.url}/v2/models/shapes/versions/{unknown}/ready").status_code == 404
        )


def test_grpc_and_the_metrics_name_the_model_and_version(server: ServerProcess) -> None:
    client = triton_grpc.InferenceServerClient(server.grpc_url)
    tensor = triton_grpc.InferInput("IMAGE", [1, 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[STAR]], dtype=np.object_))
    result = client.infer("shapes", [tensor], model_version="1")
    assert result.get_response().model_version == "1"
    assert client.infer("tiny", [tensor]).get_response().model_name == "tiny"
    images = server.metrics()["resnet_serve_images_total"]
    assert images[(("model", "shapes"), ("version", "1"))] >= 1
    assert images[(("model", "tiny"), ("version", "1"))] >= 1
    served = {
        (dict(labels)["model"], dict(labels)["version"])
        for labels in server.metrics()["resnet_serve_model_info"]
    }
    assert served == {("shapes", "1"), ("shapes", "2"), ("tiny", "1")}


def test_one_model_unloads_while_the_other_serves(server: ServerProcess) -> None:
    client = triton_grpc.InferenceServerClient(server.grpc_url)
    client.unload_model("tiny")
    assert not client.is_model_ready("tiny") and client.is_model_ready("shapes")
    assert server.get("/health/ready").status_code == 200  # shapes still serves
    refused = _predict(server, "tiny")
    assert refused.status_code == 503
    assert "model tiny is unloaded" in refused.json()["error"]["message"]
    assert _predict(server, "shapes").status_code == 200
    for described in ("/model?model=tiny", "/v2/models/tiny", "/v2/models/tiny/config"):
        assert server.get(described).status_code == 503, described  # known, not served now
    index = client.get_model_repository_index(as_json=True)["models"]
    assert {(m["name"], m["version"], m.get("state")) for m in index} == {
        ("shapes", "1", "READY"),
        ("shapes", "2", "READY"),
        ("tiny", "1", "UNAVAILABLE"),
    }
    client.load_model("tiny")
    assert client.is_model_ready("tiny") and _predict(server, "tiny").status_code == 200


def test_a_model_that_does_not_fit_is_refused_while_the_others_serve(
    server: ServerProcess, repository: Path
) -> None:
    _copy_demo(repository / ".big.partial" / "1")
    (repository / ".big.partial").rename(repository / "big")  # found by polling
    client = triton_grpc.InferenceServerClient(server.grpc_url)

    def refused() -> list[dict]:
        index = client.get_model_repository_index(as_json=True)["models"]
        return [m for m in index if m["name"] == "big" and "MODEL_MEMORY_MB" in m.get("reason", "")]

    (entry,) = wait_for(refused, 60, "the new model refused for its memory")
    assert entry["state"] == "UNAVAILABLE"
    assert f"the {int(3.5 * RESNET18_MB)} MB limit" in entry["reason"]
    refusals = server.metrics()["resnet_serve_model_version_refusals_total"]
    assert refusals[(("model", "big"),)] == 1  # counted once, not at every poll
    assert "refused big version 1 (not served)" in server.logs()
    assert _predict(server, "shapes").status_code == 200
    assert _predict(server, "big").status_code == 404
    with pytest.raises(InferenceServerException, match="big version 1 was refused"):
        client.load_model("big")  # asked for: tried again, and still too big

    client.unload_model("tiny")  # its memory, freed, makes room
    client.load_model("big")
    assert _predict(server, "big").json()["model"] == "big"
    assert not client.is_model_ready("tiny")
    client.unload_model("big")
    client.load_model("tiny")


def test_the_predict_command_takes_the_model_by_name(server: ServerProcess, tmp_path: Path) -> None:
    image = tmp_path / "star.jpg"
    image.write_bytes(STAR)
    command = [str(CLI), "predict", "--url", server.url, "--json", str(image)]
    asked = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert asked.returncode == 1  # no model named, on a server of two
    assert "name a model: this server serves shapes, tiny" in asked.stdout
    done = subprocess.run([*command, "--model", "shapes"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    (result,) = json.loads(done.stdout)
    assert result["predictions"][0]["label"] == "star"


def test_a_broken_config_json_is_refused_once_while_the_model_serves(
    server: ServerProcess, repository: Path
) -> None:
    config = repository / "shapes" / "config.json"
    good = config.read_text()
    config.write_text('{"max_batch_size": 0}')
    try:
        refused = "refused model shapes (still serving version 1, 2)"
        wait_for(lambda: refused in server.logs(), 30, "the broken config.json refused")
        time.sleep(10 * 0.2)  # ten more polls: no event marks that none of them counts again
        assert server.logs().count(refused) == 1, server.logs()[-2000:]
        assert _predict(server, "shapes").status_code == 200
        refusals = server.metrics()["resnet_serve_model_version_refusals_total"]
        assert refusals[(("model", "shapes"),)] == 1
    finally:
        config.write_text(good)


def test_a_new_version_policy_applies_without_reloading_what_stays(
    server: ServerProcess, repository: Path
) -> None:
    config = repository / "shapes" / "config.json"
    good = config.read_text()
    loads = server.logs().count("loaded demo version 2 (")  # shapes' bundles are named demo
    policy = {"max_batch_size": 2, "version_policy": {"specific": {"versions": [2]}}}
    config.write_text(json.dumps(policy))
    try:
        wait_for(
            lambda: server.get("/v2/models/shapes").json()["versions"] == ["2"],
            30,
            "version 1 retired by the new policy",
        )
        assert server.logs().count("loaded demo version 2 (") == loads  # kept, not reloaded
        assert _predict(server, "shapes").json()["version"] == "2"
    finally:
        config.write_text(good)
    wait_for(
        lambda: server.get("/v2/models/shapes").json()["versions"] == ["1", "2"],
        60,
        "version 1 back under the first policy",
    )
