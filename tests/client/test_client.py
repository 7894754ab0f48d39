"""The Python client against the real server: typed results in order, the server's errors, keys."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from PIL import Image

from app.client import (
    AsyncResnetClient,
    HeatMap,
    ModelInfo,
    Prediction,
    ResnetClient,
    ResnetConnectionError,
    ResnetServeError,
)
from tests.conftest import (
    DEMO_BUNDLE,
    REPO,
    ServerProcess,
    encode,
    free_port,
    known_image,
    write_bundle,
)

HEAVY_MODULES = ("torch", "torchvision", "PIL", "numpy", "fastapi")


def test_importing_the_client_loads_no_torch_pil_numpy_or_server_code() -> None:
    script = (
        "import json, sys\n"
        "import app.client, app.cli.prediction\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in sys.argv[1:])))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, *HEAVY_MODULES],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert json.loads(out) == []


def test_sync_predict_sends_several_images_in_one_request_and_keeps_their_order(
    demo_server: ServerProcess, labelled_jpegs: list[tuple[str, bytes]]
) -> None:
    with ResnetClient(demo_server.url) as client:
        prediction = client.predict([jpeg for _, jpeg in labelled_jpegs], top_k=2)
    assert isinstance(prediction, Prediction)
    assert prediction.model == "demo"
    assert [result.top.label for result in prediction.results] == [
        label for label, _ in labelled_jpegs
    ]
    for result in prediction.results:
        assert len(result.predictions) == 2
        assert result.predictions[0].score >= result.predictions[1].score
        assert result.batch_size >= 1


def test_async_predict_reads_paths_and_returns_the_right_labels(
    demo_server: ServerProcess, labelled_jpegs: list[tuple[str, bytes]], tmp_path: Path
) -> None:
    paths = []
    for position, (label, jpeg) in enumerate(labelled_jpegs):
        paths.append(tmp_path / f"{position}-{label}.jpg")
        paths[-1].write_bytes(jpeg)

    async def classify() -> list[Prediction]:
        async with AsyncResnetClient(demo_server.url) as client:
            return await asyncio.gather(*(client.predict(path) for path in paths))

    predictions = asyncio.run(classify())
    assert [p.results[0].top.label for p in predictions] == [label for label, _ in labelled_jpegs]
    assert len({p.request_id for p in predictions}) == len(paths)


def test_predict_sends_the_request_id_given(
    demo_server: ServerProcess, labelled_jpegs: list[tuple[str, bytes]]
) -> None:
    with ResnetClient(demo_server.url) as client:
        prediction = client.predict(labelled_jpegs[0][1], request_id="trace-42")
    assert prediction.request_id == "trace-42"


def test_an_invalid_image_raises_the_servers_invalid_image_error(
    demo_server: ServerProcess, labelled_jpegs: list[tuple[str, bytes]]
) -> None:
    with ResnetClient(demo_server.url) as client, pytest.raises(ResnetServeError) as caught:
        client.predict([labelled_jpegs[0][1], b"not an image at all"], request_id="bad-1")
    error = caught.value
    assert (error.status, error.code, error.request_id) == (400, "invalid_image", "bad-1")
    assert error.message.startswith("files[1]")


def test_an_out_of_range_top_k_raises_invalid_parameter(
    demo_server: ServerProcess, labelled_jpegs: list[tuple[str, bytes]]
) -> None:
    with ResnetClient(demo_server.url) as client, pytest.raises(ResnetServeError) as caught:
        client.predict(labelled_jpegs[0][1], top_k=1000)
    assert (caught.value.status, caught.value.code) == (422, "invalid_parameter")


def test_health_reports_the_ready_demo_model(demo_server: ServerProcess) -> None:
    with ResnetClient(demo_server.url) as client:
        health = client.health()
    assert (health.ready, health.status, health.model) == (True, "ready", "demo")
    assert 0.0 <= health.saturation <= 1.0


def test_model_describes_the_demo_bundle_as_its_model_json_does(
    demo_server: ServerProcess,
) -> None:
    manifest = json.loads((DEMO_BUNDLE / "model.json").read_text())
    with ResnetClient(demo_server.url) as client:
        info = client.model()
    assert isinstance(info, ModelInfo)
    assert (info.name, info.arch, info.num_classes) == ("demo", "resnet18", 9)
    assert info.labels == tuple(manifest["labels"])
    assert info.input_size == manifest["preprocessing"]["input_size"] == 112
    assert info.preprocessing.mean == tuple(manifest["preprocessing"]["mean"])
    assert info.weights_sha256 == manifest["weights_sha256"]
    assert info.provenance["epochs"] == manifest["provenance"]["epochs"]


def test_explain_returns_a_png_of_the_input_size_and_the_class_explained(
    demo_server: ServerProcess,
) -> None:
    star = encode(known_image("star", 1))
    with ResnetClient(demo_server.url) as client:
        top = client.explain(star)
        cross = client.explain(star, target="cross")
        by_index = client.explain(star, target=3)
    with Image.open(io.BytesIO(top.png)) as overlay:
        assert (overlay.format, overlay.size) == ("PNG", (112, 112))
    assert (top.explained.label, top.explained.index) == ("star", 6)
    assert 0.5 < top.explained.score <= 1.0
    assert (cross.explained.label, cross.explained.index) == ("cross", 3)
    assert by_index.explained == cross.explained


def test_a_label_that_needs_percent_encoding_comes_back_decoded(
    start_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    """Header values are ASCII: the server percent-encodes a label, the client decodes it."""
    bundle = write_bundle(tmp_path / "accents", ["café 100%", "b"], input_size=32)
    server = start_server(model_dir=bundle).wait_ready()
    with ResnetClient(server.url) as client:
        explanation = client.explain(encode(known_image("star", 1)), target=0)
    assert explanation.explained.label == "café 100%"


def test_async_explain_map_returns_the_map_at_the_input_size(demo_server: ServerProcess) -> None:
    async def explain() -> HeatMap:
        async with AsyncResnetClient(demo_server.url) as client:
            return await client.explain_map(encode(known_image("ring", 2)), target="ring")

    heat_map = asyncio.run(explain())
    assert (heat_map.explained.label, heat_map.explained.index) == ("ring", 4)
    assert len(heat_map.rows) == 112
    assert {len(row) for row in heat_map.rows} == {112}
    assert max(max(row) for row in heat_map.rows) == 1.0
    assert min(min(row) for row in heat_map.rows) >= 0.0


def test_an_unknown_explain_target_raises_the_servers_message(demo_server: ServerProcess) -> None:
    with ResnetClient(demo_server.url) as client, pytest.raises(ResnetServeError) as caught:
        client.explain(encode(known_image("star", 1)), target="unicorn")
    error = caught.value
    assert (error.status, error.code) == (422, "invalid_parameter")
    assert error.message == "target 'unicorn' is neither a label of this model nor an index 0..8"


def test_the_api_key_is_sent_as_a_bearer_token(
    start_server: Callable[..., ServerProcess], labelled_jpegs: list[tuple[str, bytes]]
) -> None:
    server = start_server(api_keys="secret-key", max_batch_size=1).wait_ready()
    label, jpeg = labelled_jpegs[0]
    with ResnetClient(server.url, api_key="secret-key") as client:
        assert client.predict(jpeg).results[0].top.label == label
    with ResnetClient(server.url) as client, pytest.raises(ResnetServeError) as caught:
        client.predict(jpeg)
    assert (caught.value.status, caught.value.code) == (401, "unauthorized")


class _BadGateway(BaseHTTPRequestHandler):
    """What a proxy in front of a dead server answers: HTML, not the API's JSON."""

    def do_POST(self) -> None:
        body = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
        self.send_response(502)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def bad_gateway() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _BadGateway)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_a_non_json_error_body_still_raises_a_readable_serve_error(bad_gateway: str) -> None:
    with ResnetClient(bad_gateway) as client, pytest.raises(ResnetServeError) as caught:
        client.predict(b"anything")
    error = caught.value
    assert (error.status, error.code) == (502, "unexpected_response")
    assert error.message.startswith("Bad Gateway")
    assert "502 Bad Gateway" in error.message.split(":", 1)[1]


def test_an_unreachable_server_raises_a_connection_error_naming_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with ResnetClient(url) as client, pytest.raises(ResnetConnectionError) as caught:
        client.predict(b"anything")
    assert str(caught.value).startswith(f"cannot reach {url}: ")
