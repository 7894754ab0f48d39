"""POST /predict against a real server with the demo model: right labels, right shape."""

from __future__ import annotations

import json
import math

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO, ServerProcess, encode, known_image

DEMO_SERIES = (("model", "demo"), ("version", "1"))  # the labels of the demo model's series


def _top_label(result: dict) -> str:
    return result["predictions"][0]["label"]


def test_single_file_upload_gets_the_right_label(
    demo_server: ServerProcess, labelled_jpegs: list[tuple[str, bytes]]
) -> None:
    for label, jpeg in labelled_jpegs:
        response = httpx.post(
            demo_server.url + "/predict", files={"file": ("x.jpg", jpeg, "image/jpeg")}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["model"] == "demo"
        assert len(body["results"]) == 1
        assert _top_label(body["results"][0]) == label


def test_multi_image_request_answers_in_input_order(
    demo_server: ServerProcess, labelled_jpegs: list[tuple[str, bytes]]
) -> None:
    files = [
        ("files", (f"{i}.jpg", jpeg, "image/jpeg")) for i, (_, jpeg) in enumerate(labelled_jpegs)
    ]
    files.insert(0, ("file", ("first.jpg", labelled_jpegs[3][1], "image/jpeg")))
    response = httpx.post(demo_server.url + "/predict", files=files, timeout=30)
    assert response.status_code == 200, response.text
    labels = [_top_label(result) for result in response.json()["results"]]
    assert labels == [labelled_jpegs[3][0]] + [label for label, _ in labelled_jpegs]


@pytest.mark.parametrize("content_type", ["image/jpeg", "application/octet-stream"])
def test_raw_body_upload_gets_the_right_label(
    demo_server: ServerProcess, content_type: str
) -> None:
    response = httpx.post(
        demo_server.url + "/predict",
        content=encode(known_image("star", 1)),
        headers={"Content-Type": content_type},
    )
    assert response.status_code == 200, response.text
    assert _top_label(response.json()["results"][0]) == "star"


def test_predictions_are_sorted_probabilities_with_top_k_entries(
    demo_server: ServerProcess,
) -> None:
    response = httpx.post(
        demo_server.url + "/predict?top_k=9",
        files={"file": ("x.jpg", encode(known_image("ring", 2)), "image/jpeg")},
    )
    result = response.json()["results"][0]
    scores = [p["score"] for p in result["predictions"]]
    assert len(scores) == 9  # the 8 shapes and clutter
    assert scores == sorted(scores, reverse=True)
    assert math.isclose(sum(scores), 1.0, abs_tol=1e-4)
    assert sorted(p["index"] for p in result["predictions"]) == list(range(9))
    assert result["batch_size"] >= 1
    assert result["queue_ms"] >= 0 and result["inference_ms"] > 0


def test_default_top_k_is_five(demo_server: ServerProcess) -> None:
    response = httpx.post(
        demo_server.url + "/predict",
        files={"file": ("x.jpg", encode(known_image("cross", 3)), "image/jpeg")},
    )
    assert len(response.json()["results"][0]["predictions"]) == 5


def _rotated_with_exif(image: Image.Image) -> bytes:
    """Store the image rotated 90 degrees with an EXIF tag that tells viewers to undo it."""
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 CW to display
    return encode(image.transpose(Image.Transpose.ROTATE_90), "JPEG", exif=exif.tobytes())


@pytest.mark.parametrize(
    ("label", "convert"),
    [
        ("circle", lambda im: encode(im, "PNG")),
        ("square", lambda im: encode(im, "WEBP", quality=90)),
        ("triangle", lambda im: encode(im, "BMP")),
        ("star", lambda im: encode(im.convert("P"), "GIF")),
        ("cross", lambda im: encode(im, "TIFF")),
        ("ring", lambda im: encode(im.convert("RGBA"), "PNG")),
        ("stripes", lambda im: encode(im.convert("CMYK"), "JPEG")),
        ("checkerboard", lambda im: encode(im.convert("L"), "PNG")),
        ("triangle", _rotated_with_exif),
    ],
)
def test_every_supported_format_and_mode_is_classified(
    demo_server: ServerProcess, label: str, convert
) -> None:
    data = convert(known_image(label, 4))
    response = httpx.post(
        demo_server.url + "/predict", files={"file": ("x", data, "application/octet-stream")}
    )
    assert response.status_code == 200, response.text
    assert _top_label(response.json()["results"][0]) == label


def test_sixteen_bit_greyscale_png_is_accepted(demo_server: ServerProcess) -> None:
    grey = known_image("square", 5).convert("L")
    wide = Image.frombytes("I;16", grey.size, bytes(b for v in grey.tobytes() for b in (0, v)))
    response = httpx.post(
        demo_server.url + "/predict",
        content=encode(wide, "PNG"),
        headers={"Content-Type": "image/png"},
    )
    assert response.status_code == 200, response.text


def test_request_id_is_honoured_and_echoed(demo_server: ServerProcess) -> None:
    response = httpx.post(
        demo_server.url + "/predict",
        content=encode(known_image("circle", 6)),
        headers={"Content-Type": "image/jpeg", "X-Request-ID": "trace-42"},
    )
    assert response.headers["x-request-id"] == "trace-42"
    assert response.json()["request_id"] == "trace-42"
    generated = demo_server.get("/health").headers["x-request-id"]
    assert len(generated) == 32


def test_health_reports_the_loaded_model(demo_server: ServerProcess) -> None:
    body = demo_server.get("/health").json()
    assert body["status"] == "ready"
    assert body["model"] == "demo"
    assert body["arch"] == "resnet18"
    assert body["device"] == "cpu"
    assert body["precision"] == "fp32"
    assert body["max_batch_size"] == 8
    assert body["queue_depth"] == 0
    assert demo_server.get("/health/ready").json()["model"] == "demo"
    assert demo_server.get("/health/live").status_code == 200


def test_metrics_count_requests_and_images(demo_server: ServerProcess) -> None:
    ok = (("route", "/predict"), ("status", "200"))

    def counts() -> tuple[float, float, float]:
        metrics = demo_server.metrics()
        return (
            metrics["resnet_serve_requests_total"].get(ok, 0.0),
            metrics["resnet_serve_images_total"].get(DEMO_SERIES, 0.0),
            metrics["resnet_serve_batch_size_count"].get(DEMO_SERIES, 0.0),
        )

    before = counts()
    response = httpx.post(
        demo_server.url + "/predict",
        files=[
            ("files", (f"{i}.jpg", encode(known_image("ring", i)), "image/jpeg")) for i in (7, 9)
        ],
    )
    assert response.status_code == 200
    requests, images, batches = (a - b for a, b in zip(counts(), before, strict=True))
    # One request of two images, in one batch or two; nothing left queued.
    assert (requests, images) == (1, 2) and batches in (1, 2)
    assert demo_server.metrics()["resnet_serve_queue_depth"][()] == 0


def test_image_is_preprocessed_like_training(demo_server: ServerProcess) -> None:
    """The same picture at another size and JPEG quality keeps its label."""
    image = known_image("star", 8)
    small = image.resize((image.width // 2, image.height // 2))
    for data in (encode(image, quality=95), encode(small, quality=60)):
        response = httpx.post(
            demo_server.url + "/predict", content=data, headers={"Content-Type": "image/jpeg"}
        )
        assert _top_label(response.json()["results"][0]) == "star"


def test_json_logs_have_one_line_per_request_with_its_id(start_server) -> None:
    server = start_server(log_format="json", max_batch_size=2).wait_ready()
    httpx.post(
        server.url + "/predict",
        content=encode(known_image("ring", 9)),
        headers={"Content-Type": "image/jpeg", "X-Request-ID": "json-log-1"},
    )
    server.terminate()
    records = [json.loads(line) for line in server.logs().splitlines() if line.startswith("{")]
    access = [r for r in records if r.get("request_id") == "json-log-1"]
    assert len(access) == 1
    assert access[0]["route"] == "/predict"
    assert access[0]["status"] == 200
    assert access[0]["batch_size"] == 1
    assert access[0]["latency_ms"] > 0


def test_the_quick_start_examples_are_a_star_and_none_of_these(demo_server: ServerProcess) -> None:
    readme = (REPO / "README.md").read_text()
    answers = {}
    for name in ("star", "gradient", "coffee"):
        assert f"curl -F file=@examples/{name}.jpg localhost:8000/predict" in readme
        with (REPO / "examples" / f"{name}.jpg").open("rb") as image:
            response = httpx.post(demo_server.url + "/predict", files={"file": image}, timeout=30)
        result = response.json()["results"][0]
        answers[name] = (result["predictions"][0]["label"], result["abstained"])
    assert answers == {
        "star": ("star", False),
        "gradient": ("clutter", True),
        "coffee": ("clutter", True),  # a photo of a coffee cup: none of the demo's classes
    }


def _noise_jpeg() -> bytes:
    pixels = np.random.default_rng(1).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    return encode(Image.fromarray(pixels))


def _abstained(server: ServerProcess, images: list[bytes]) -> list[bool]:
    files = [("files", (f"{i}.jpg", jpeg, "image/jpeg")) for i, jpeg in enumerate(images)]
    response = httpx.post(server.url + "/predict", files=files, timeout=30)
    assert response.status_code == 200, response.text
    return [result["abstained"] for result in response.json()["results"]]


def test_noise_abstains_at_the_bundles_calibrated_threshold(start_server) -> None:
    server = start_server(MAX_BATCH_SIZE=2).wait_ready()
    assert _abstained(server, [_noise_jpeg(), encode(known_image("star", 1))]) == [True, False]


def test_abstain_threshold_setting_overrides_the_bundle(start_server) -> None:
    server = start_server(MAX_BATCH_SIZE=2, ABSTAIN_THRESHOLD=0, ABSTAIN_LABELS="").wait_ready()
    assert _abstained(server, [_noise_jpeg()]) == [False]


def test_the_bundles_abstain_labels_apply_unless_the_setting_replaces_them(start_server) -> None:
    """The demo bundle says its clutter class means "none of these": a plain gradient is answered
    clutter and abstained even with no threshold; an empty setting turns the bundle's labels off."""
    gradient = encode(Image.linear_gradient("L").convert("RGB"))
    server = start_server(MAX_BATCH_SIZE=2, ABSTAIN_THRESHOLD=0).wait_ready()
    top = httpx.post(server.url + "/predict", files={"file": ("g.jpg", gradient, "image/jpeg")})
    assert top.json()["results"][0]["predictions"][0]["label"] == "clutter"
    assert _abstained(server, [gradient]) == [True]
    assert server.get("/model").json()["abstain_labels"] == ["clutter"]
    server.stop()
    server = start_server(MAX_BATCH_SIZE=2, ABSTAIN_THRESHOLD=0, ABSTAIN_LABELS="").wait_ready()
    assert _abstained(server, [gradient]) == [False]
    assert server.get("/model").json()["abstain_labels"] == []


def test_abstain_labels_flag_their_class_whatever_its_score(start_server) -> None:
    """A "none of these" class (here the demo's star stands in for one) is answered abstained."""
    server = start_server(MAX_BATCH_SIZE=2, ABSTAIN_THRESHOLD=0, ABSTAIN_LABELS="star").wait_ready()
    star, circle = encode(known_image("star", 1)), encode(known_image("circle", 2))
    assert _abstained(server, [star, circle]) == [True, False]
    assert httpx.get(server.url + "/model").json()["abstain_labels"] == ["star"]


def test_an_abstain_label_the_bundle_lacks_stops_start_up_with_one_line(start_server) -> None:
    server = start_server(ABSTAIN_LABELS="pentagon, star")
    assert server.process.wait(60) == 3
    assert "abstain_labels names pentagon, not among the bundle's labels" in server.logs()


def test_a_runner_loaded_by_the_caller_is_checked_for_abstain_labels_too() -> None:
    """Benchmarks and replicas load their own runner; a misspelt label must not pass silently,
    and the runner it refused is closed."""
    from app.model.bundle import BundleError
    from app.serving.builder import build_service, load_runner
    from app.serving.runner import ModelRunner
    from app.settings import Settings

    loaded = []

    def load(settings: Settings) -> ModelRunner:
        loaded.append(load_runner(settings))
        return loaded[-1]

    settings = Settings(model_dir=REPO / "models" / "demo", abstain_labels="strar")
    with pytest.raises(BundleError, match="abstain_labels names strar, not among"):
        build_service(settings, load)
    assert loaded[0]._closing.is_set()  # closed: no thread left behind
