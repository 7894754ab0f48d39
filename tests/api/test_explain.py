"""POST /explain against a real server with the demo model: a Grad-CAM of the crop the model saw,
as a PNG overlay or as numbers, that lands on the drawn shape."""

from __future__ import annotations

import io
import json

import httpx
import numpy as np
import pytest
from PIL import Image

from app.training.demo_data import _shape_mask, render_image
from tests.conftest import DEMO_BUNDLE, ServerProcess, encode, known_image

INPUT_SIZE = json.loads((DEMO_BUNDLE / "model.json").read_text())["preprocessing"]["input_size"]


def explain(server: ServerProcess, image: bytes, **params: str) -> httpx.Response:
    files = {"file": ("x.jpg", image, "image/jpeg")}
    return httpx.post(server.url + "/explain", files=files, params=params, timeout=30)


def test_png_is_an_overlay_of_the_input_crop_with_the_class_in_headers(
    demo_server: ServerProcess,
) -> None:
    response = explain(demo_server, encode(known_image("ring", 1)))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(response.content))
    assert (image.format, image.mode, image.size) == ("PNG", "RGB", (INPUT_SIZE, INPUT_SIZE))
    assert response.headers["x-explained-label"] == "ring"
    assert response.headers["x-explained-index"] == "4"  # "ring" in the demo's labels
    assert 0.5 < float(response.headers["x-explained-score"]) <= 1


def test_json_map_has_the_input_size_and_values_in_0_1(demo_server: ServerProcess) -> None:
    response = explain(demo_server, encode(known_image("cross", 2)), format="json")
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["label"], body["width"], body["height"]) == ("cross", INPUT_SIZE, INPUT_SIZE)
    cam = np.array(body["map"])
    assert cam.shape == (INPUT_SIZE, INPUT_SIZE)
    assert cam.min() == 0.0 and cam.max() == 1.0
    assert body["score"] > 0.5


def test_raw_body_is_accepted(demo_server: ServerProcess) -> None:
    response = httpx.post(
        demo_server.url + "/explain?format=json",
        content=encode(known_image("star", 3), "PNG"),
        headers={"Content-Type": "image/png"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert response.json()["label"] == "star"


@pytest.mark.parametrize("target", ["circle", "1"])  # "circle" is index 1 of the demo labels
def test_target_by_label_or_index_is_explained_and_echoed(
    demo_server: ServerProcess, target: str
) -> None:
    image = encode(known_image("square", 4))
    response = explain(demo_server, image, target=target)
    assert response.status_code == 200, response.text
    assert response.headers["x-explained-label"] == "circle"
    assert response.headers["x-explained-index"] == "1"
    response = explain(demo_server, image, target=target, format="json")
    assert response.headers["x-explained-label"] == "circle"
    body = response.json()
    assert (body["label"], body["index"]) == ("circle", 1)
    assert body["score"] < 0.5  # a square is explained as a circle, on request


def test_unknown_target_is_422(demo_server: ServerProcess) -> None:
    response = explain(demo_server, encode(known_image("star", 5)), target="giraffe")
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_parameter"
    assert "giraffe" in error["message"]


def test_unknown_format_is_422(demo_server: ServerProcess) -> None:
    response = explain(demo_server, encode(known_image("star", 5)), format="gif")
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_parameter"


def test_non_image_is_400_invalid_image(demo_server: ServerProcess) -> None:
    files = {"file": ("notes.txt", b"not an image at all", "text/plain")}
    response = httpx.post(demo_server.url + "/explain", files=files, timeout=30)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_image"
    assert "notes.txt" in error["message"]


def test_more_than_one_image_is_refused_with_a_clear_message(demo_server: ServerProcess) -> None:
    image = encode(known_image("star", 6))
    files = [("files", ("a.jpg", image, "image/jpeg")), ("files", ("b.jpg", image, "image/jpeg"))]
    response = httpx.post(demo_server.url + "/explain", files=files, timeout=30)
    assert response.status_code == 413
    error = response.json()["error"]
    assert error["code"] == "too_many_images"
    assert "one image" in error["message"]


def test_openapi_documents_the_body_and_both_answers(demo_server: ServerProcess) -> None:
    operation = demo_server.get("/openapi.json").json()["paths"]["/explain"]["post"]
    assert "multipart/form-data" in operation["requestBody"]["content"]
    ok = operation["responses"]["200"]
    assert {"image/png", "application/json"} <= set(ok["content"])
    assert "X-Explained-Label" in ok["headers"]


def _shape_box(class_name: str, seed: int, size: tuple[int, int]) -> tuple[Image.Image, tuple]:
    """A demo image and its shape's bounding box in the model's input crop (x0, y0, x1, y1).

    ``render_image`` draws the mask first from its generator when given a size, so the same seed
    replays it. The box is found in the centred square, then scaled to the crop, as serving does
    (the demo model resizes the square straight to ``input_size``: no border is cut).
    """
    image = render_image(class_name, np.random.default_rng(seed), size=size)
    side = min(size)
    mask = _shape_mask(class_name, np.random.default_rng(seed), side) > 0.5
    # The replayed mask must be the drawn shape: its pixels stand out from the rest.
    top, left = (size[1] - side) // 2, (size[0] - side) // 2
    square = np.asarray(image.convert("L"), dtype=np.float32)[top : top + side, left : left + side]
    assert abs(square[mask].mean() - square[~mask].mean()) > 30, "mask replay out of step"
    ys, xs = np.nonzero(mask)
    scale = INPUT_SIZE / side
    return image, (
        xs.min() * scale,
        ys.min() * scale,
        (xs.max() + 1) * scale,
        (ys.max() + 1) * scale,
    )


def test_map_lands_on_the_drawn_shape(demo_server: ServerProcess) -> None:
    sizes = [(200, 200), (300, 200), (180, 260), (240, 240)]
    classes = ["circle", "square", "triangle", "star", "cross", "ring", "stripes", "checkerboard"]
    margin = INPUT_SIZE / 16  # the box dilated a little: a 4x4 map upsampled is soft at the edges
    found = []
    for seed in range(16):
        image, (x0, y0, x1, y1) = _shape_box(classes[seed % 8], seed, sizes[seed % 4])
        response = explain(demo_server, encode(image, quality=95), format="json")
        assert response.status_code == 200, response.text
        cam = np.array(response.json()["map"])
        x0, y0 = (max(0, round(v - margin)) for v in (x0, y0))
        x1, y1 = (min(INPUT_SIZE, round(v + margin)) for v in (x1, y1))
        inside = cam[y0:y1, x0:x1].sum() / cam.sum()
        box_share = (x1 - x0) * (y1 - y0) / INPUT_SIZE**2
        # Most of the mass in the box, and denser there than a flat map would be.
        found.append(inside > 0.5 and inside > box_share)
    assert sum(found) >= 0.7 * len(found), found
