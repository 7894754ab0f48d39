"""The Open Inference Protocol (KServe v2), driven by the official Triton HTTP client and by plain JSON."""

from __future__ import annotations

import asyncio
import base64
import json

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
import tritonclient.http.aio as triton_aio
from PIL import Image
from tritonclient.utils import InferenceServerException

from app.edge.open_inference.codec import parse_request
from app.model.preprocessing import PreprocessingSpec, pixel_transform
from app.serving.errors import InvalidInputError
from tests.conftest import DEMO_BUNDLE, ServerProcess, encode, known_image

MODEL = json.loads((DEMO_BUNDLE / "model.json").read_text())
SIZE = MODEL["preprocessing"]["input_size"]
SHAPES = ["circle", "star", "cross"]
IMAGES = [encode(known_image(name, seed)) for seed, name in enumerate(SHAPES)]


@pytest.fixture(scope="module")
def client(demo_server: ServerProcess) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(url=demo_server.url.removeprefix("http://"))


def _image_input() -> triton.InferInput:
    tensor = triton.InferInput("IMAGE", [len(IMAGES)], "BYTES")
    tensor.set_data_from_numpy(np.array(IMAGES, dtype=np.object_), binary_data=True)
    return tensor


def _labels(probabilities: np.ndarray) -> list[str]:
    return [MODEL["labels"][i] for i in probabilities.argmax(axis=1)]


def test_health_metadata_and_readiness_through_the_triton_client(client) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready(MODEL["name"])
    assert "classification" in client.get_server_metadata()["extensions"]
    metadata = client.get_model_metadata(MODEL["name"])
    assert metadata["name"] == MODEL["name"] and metadata["versions"] == ["1"]
    assert {i["name"]: i["shape"] for i in metadata["inputs"]} == {
        "IMAGE": [-1, 1],
        "PIXELS": [-1, 3, SIZE, SIZE],
    }
    assert [(o["name"], o["datatype"], o["shape"]) for o in metadata["outputs"]] == [
        ("PROBABILITIES", "FP32", [-1, MODEL["num_classes"]]),
        ("ABSTAINED", "BOOL", [-1, 1]),
    ]


def test_health_routes_answer_the_status_code_and_a_json_body(demo_server: ServerProcess) -> None:
    name = MODEL["name"]
    answers = {
        "/v2/health/live": {"live": True},
        "/v2/health/ready": {"ready": True},
        f"/v2/models/{name}/ready": {"name": name, "ready": True},
        f"/v2/models/{name}/versions/1/ready": {"name": name, "ready": True},
    }
    for path, body in answers.items():
        response = httpx.get(demo_server.url + path)
        assert (response.status_code, response.json()) == (200, body), path


def test_unknown_model_or_version_is_404_in_the_protocols_error_shape(
    client, demo_server: ServerProcess
) -> None:
    with pytest.raises(InferenceServerException) as error:
        client.get_model_metadata("no-such-model")
    assert error.value.status() == "404"
    response = httpx.get(demo_server.url + f"/v2/models/{MODEL['name']}/versions/7")
    assert response.status_code == 404
    assert set(response.json()) == {"error"}


@pytest.mark.parametrize("binary_output", [True, False])
def test_binary_images_give_probabilities_as_binary_or_json(client, binary_output: bool) -> None:
    output = triton.InferRequestedOutput("PROBABILITIES", binary_data=binary_output)
    result = client.infer(MODEL["name"], [_image_input()], outputs=[output])
    probabilities = result.as_numpy("PROBABILITIES")
    assert probabilities.shape == (3, MODEL["num_classes"]) and probabilities.dtype == np.float32
    assert np.allclose(probabilities.sum(axis=1), 1, atol=1e-4)
    assert _labels(probabilities) == SHAPES


@pytest.mark.parametrize("binary_output", [True, False])
def test_abstained_output_flags_noise_below_the_bundles_threshold(
    client, binary_output: bool
) -> None:
    noise = np.random.default_rng(1).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    images = [encode(Image.fromarray(noise)), IMAGES[1]]
    tensor = triton.InferInput("IMAGE", [2], "BYTES")
    tensor.set_data_from_numpy(np.array(images, dtype=np.object_), binary_data=True)
    outputs = [
        triton.InferRequestedOutput(name, binary_data=binary_output)
        for name in ("ABSTAINED", "PROBABILITIES")
    ]
    result = client.infer(MODEL["name"], [tensor], outputs=outputs)
    assert result.as_numpy("ABSTAINED").tolist() == [[True], [False]]
    assert _labels(result.as_numpy("PROBABILITIES"))[1] == "star"


def test_classification_extension_answers_score_index_label(client) -> None:
    output = triton.InferRequestedOutput("PROBABILITIES", binary_data=True, class_count=2)
    result = client.infer(MODEL["name"], [_image_input()], outputs=[output])
    rows = result.as_numpy("PROBABILITIES")
    assert rows.shape == (3, 2)
    for row, name in zip(rows, SHAPES, strict=True):
        score, index, label = row[0].decode().split(":")
        assert label == name and MODEL["labels"][int(index)] == name and 0 < float(score) <= 1


@pytest.fixture(scope="module")
def pixels() -> np.ndarray:
    """The SHAPES images as the model sees them: UINT8 [3,3,S,S], resized and cropped."""
    spec = PreprocessingSpec(**MODEL["preprocessing"])
    transform = pixel_transform(spec)
    return np.stack(
        [transform(known_image(name, seed)).numpy() for seed, name in enumerate(SHAPES)]
    )


def _infer_pixels(
    client: triton.InferenceServerClient, pixels: np.ndarray, datatype: str, binary: bool
) -> np.ndarray:
    tensor = triton.InferInput("PIXELS", list(pixels.shape), datatype)
    tensor.set_data_from_numpy(pixels, binary_data=binary)
    return client.infer(MODEL["name"], [tensor]).as_numpy("PROBABILITIES")


def test_pixels_tensor_at_the_input_size(client, pixels: np.ndarray) -> None:
    assert _labels(_infer_pixels(client, pixels, "UINT8", binary=True)) == SHAPES


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_fp32_pixels_answer_as_the_same_uint8_pixels_do(
    client, pixels: np.ndarray, binary: bool
) -> None:
    expected = _infer_pixels(client, pixels, "UINT8", binary=True)
    probabilities = _infer_pixels(client, pixels.astype(np.float32), "FP32", binary)
    assert _labels(probabilities) == SHAPES
    assert np.allclose(probabilities, expected, atol=1e-5)


def test_model_version_1_is_served_and_any_other_is_404(client) -> None:
    result = client.infer(MODEL["name"], [_image_input()], model_version="1")
    assert _labels(result.as_numpy("PROBABILITIES")) == SHAPES
    with pytest.raises(InferenceServerException) as error:
        client.infer(MODEL["name"], [_image_input()], model_version="2")
    assert error.value.status() == "404"
    assert error.value.message() == (
        f"unknown model {MODEL['name']} version 2; it serves version 1"
    )


def test_triton_model_config_describes_the_tensors_without_the_batch_dimension(
    client, demo_server: ServerProcess
) -> None:
    config = client.get_model_config(MODEL["name"])
    assert config == {
        "name": MODEL["name"],
        "platform": "pytorch",
        # The server's batch size: below the default limit of images per request.
        "max_batch_size": int(demo_server.env["RESNET_SERVE_MAX_BATCH_SIZE"]),
        "input": [
            # Triton's rules: no empty dims with batching; alternative inputs are optional.
            {"name": "IMAGE", "data_type": "TYPE_STRING", "dims": [1], "optional": True},
            {
                "name": "PIXELS",
                "data_type": "TYPE_UINT8",
                "dims": [3, SIZE, SIZE],
                "optional": True,
            },
        ],
        "output": [
            {"name": "PROBABILITIES", "data_type": "TYPE_FP32", "dims": [MODEL["num_classes"]]},
            {"name": "ABSTAINED", "data_type": "TYPE_BOOL", "dims": [1]},
        ],
    }
    assert client.get_model_config(MODEL["name"], model_version="1") == config
    for name, version in ((MODEL["name"], "2"), ("no-such-model", "")):
        with pytest.raises(InferenceServerException) as error:
            client.get_model_config(name, model_version=version)
        assert error.value.status() == "404"


def test_plain_json_request_with_base64_images(demo_server: ServerProcess) -> None:
    body = {
        "id": "json-1",
        "inputs": [
            {
                "name": "IMAGE",
                "shape": [len(IMAGES)],
                "datatype": "BYTES",
                "data": [base64.b64encode(image).decode() for image in IMAGES],
            }
        ],
    }
    response = httpx.post(demo_server.url + f"/v2/models/{MODEL['name']}/infer", json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["id"] == "json-1" and answer["model_name"] == MODEL["name"]
    output, abstained = answer["outputs"]  # no outputs named: all of them, in JSON
    assert output["shape"] == [3, MODEL["num_classes"]] and output["datatype"] == "FP32"
    assert _labels(np.array(output["data"]).reshape(output["shape"])) == SHAPES
    assert abstained == {
        "name": "ABSTAINED",
        "datatype": "BOOL",
        "shape": [3, 1],
        "data": [False, False, False],
    }


def test_images_as_n_by_1_as_triton_tools_send_them(client) -> None:
    tensor = triton.InferInput("IMAGE", [len(IMAGES), 1], "BYTES")
    tensor.set_data_from_numpy(np.array(IMAGES, dtype=np.object_).reshape(-1, 1))
    result = client.infer(MODEL["name"], [tensor])
    assert _labels(result.as_numpy("PROBABILITIES")) == SHAPES


def test_statistics_count_requests_images_and_batches(client, demo_server: ServerProcess) -> None:
    name = MODEL["name"]
    before = client.get_inference_statistics(name)["model_stats"][0]
    client.infer(name, [_image_input()])
    with pytest.raises(InferenceServerException):  # a bad image: one failed request
        bad = triton.InferInput("IMAGE", [1], "BYTES")
        bad.set_data_from_numpy(np.array([b"not an image"], dtype=np.object_))
        client.infer(name, [bad])
    after = client.get_inference_statistics(name, model_version="1")["model_stats"][0]
    assert (after["name"], after["version"]) == (name, "1")
    stats, earlier = after["inference_stats"], before["inference_stats"]
    for stage in ("success", "queue", "compute_input", "compute_infer", "compute_output"):
        assert stats[stage]["count"] == earlier[stage]["count"] + 1, stage
        assert stats[stage]["ns"] > earlier[stage]["ns"], stage
    assert stats["fail"]["count"] == earlier["fail"]["count"] + 1
    assert after["inference_count"] >= before["inference_count"] + len(IMAGES)
    assert after["execution_count"] > before["execution_count"]
    passes = sum(batch["compute_infer"]["count"] for batch in after["batch_stats"])
    images = sum(b["batch_size"] * b["compute_infer"]["count"] for b in after["batch_stats"])
    assert (passes, images) == (after["execution_count"], after["inference_count"])
    every = httpx.get(demo_server.url + "/v2/models/stats").json()["model_stats"]
    assert [entry["name"] for entry in every] == [name]
    with pytest.raises(InferenceServerException) as error:
        client.get_inference_statistics("no-such-model")
    assert error.value.status() == "404"


def test_the_documented_infer_example_gets_the_documented_answer(
    demo_server: ServerProcess,
) -> None:
    document = demo_server.get("/openapi.json").json()
    body = document["paths"]["/v2/models/{name}/infer"]["post"]["requestBody"]
    request = body["content"]["application/json"]["schema"]["examples"][0]
    expected = document["components"]["schemas"]["V2InferResponse"]["examples"][0]
    response = httpx.post(demo_server.url + f"/v2/models/{MODEL['name']}/infer", json=request)
    assert response.status_code == 200, response.text
    answer = response.json()
    # The top class as documented; the scores, and the order of the near-zero runners-up, may
    # differ a little from device to device.
    top, expected_top = answer["outputs"][0]["data"][0], expected["outputs"][0]["data"][0]
    assert top.split(":")[1:] == expected_top.split(":")[1:] == ["6", "star"]
    for answered in (answer, expected):
        answered["outputs"][0]["data"] = None
    assert answer == expected


def test_plain_json_pixels_of_the_wrong_size_are_400(demo_server: ServerProcess) -> None:
    body = {
        "inputs": [
            {"name": "PIXELS", "shape": [1, 3, 8, 8], "datatype": "UINT8", "data": [0] * 192}
        ]
    }
    response = httpx.post(demo_server.url + f"/v2/models/{MODEL['name']}/infer", json=body)
    assert response.status_code == 400
    assert f"[N,3,{SIZE},{SIZE}]" in response.json()["error"]


def test_a_bad_image_is_400_with_the_protocols_error_shape(client) -> None:
    tensor = triton.InferInput("IMAGE", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([b"not an image"], dtype=np.object_), binary_data=True)
    with pytest.raises(InferenceServerException) as error:
        client.infer(MODEL["name"], [tensor])
    assert error.value.status() == "400"
    assert "not a recognised image" in error.value.message()


@pytest.mark.parametrize(
    ("outputs", "message"),
    [
        ([{"name": "LOGITS"}], "unknown output: the model has PROBABILITIES, ABSTAINED"),
        ([{"name": "ABSTAINED"}, {"name": "ABSTAINED"}], "each output may be asked for once"),
        (
            [{"name": "ABSTAINED", "parameters": {"classification": 2}}],
            "classification applies to PROBABILITIES only",
        ),
    ],
)
def test_outputs_the_model_cannot_answer_are_400(
    demo_server: ServerProcess, outputs: list[dict[str, object]], message: str
) -> None:
    body = {
        "inputs": [
            {
                "name": "IMAGE",
                "shape": [1],
                "datatype": "BYTES",
                "data": [base64.b64encode(IMAGES[0]).decode()],
            }
        ],
        "outputs": outputs,
    }
    response = httpx.post(demo_server.url + f"/v2/models/{MODEL['name']}/infer", json=body)
    assert response.status_code == 400
    assert response.json() == {"error": message}


IMAGE_DATA = {"name": "IMAGE", "shape": [1], "datatype": "BYTES", "data": ["aGk="]}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"[" * 200_000, "not valid JSON, or nests or counts beyond reason"),
        (
            b'{"id": %s, "inputs": [{"name": "IMAGE", "shape": [1], "datatype": "BYTES"}]}'
            % (b"9" * 5000),
            "not valid JSON, or nests or counts beyond reason",
        ),
        (json.dumps({"inputs": [IMAGE_DATA], "parameters": "x"}).encode(), "parameters must be"),
        (
            json.dumps({"inputs": [IMAGE_DATA | {"parameters": [1]}]}).encode(),
            "parameters must be",
        ),
        (
            json.dumps(
                {"inputs": [IMAGE_DATA], "outputs": [{"name": "ABSTAINED", "parameters": [2]}]}
            ).encode(),
            "parameters must be",
        ),
        (
            json.dumps(
                {
                    "inputs": [
                        {
                            "name": "PIXELS",
                            "shape": [1, 3, SIZE, SIZE],
                            "datatype": "FP32",
                            "data": [10**400] + [0] * (3 * SIZE * SIZE - 1),
                        }
                    ]
                }
            ).encode(),
            "PIXELS data must be numbers",
        ),
        (
            json.dumps(
                {
                    "inputs": [
                        {
                            "name": "PIXELS",
                            "shape": [1, 3, SIZE, SIZE],
                            "datatype": "FP32",
                            "data": [],
                        }
                    ]
                }
            ).encode(),
            "PIXELS has 0 values for shape",
        ),
    ],
    ids=[
        "deep-nesting",
        "huge-integer",
        "parameters-string",
        "input-parameters-list",
        "output-parameters-list",
        "overflowing-pixel",
        "no-pixels",
    ],
)
def test_hostile_json_bodies_are_400_never_500(
    demo_server: ServerProcess, body: bytes, message: str
) -> None:
    response = httpx.post(
        demo_server.url + f"/v2/models/{MODEL['name']}/infer",
        content=body,
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]


def test_a_header_length_of_thousands_of_digits_is_400(demo_server: ServerProcess) -> None:
    response = httpx.post(
        demo_server.url + f"/v2/models/{MODEL['name']}/infer",
        content=b"{}",
        headers={"Inference-Header-Content-Length": "9" * 5000},
    )
    assert response.status_code == 400
    assert "Inference-Header-Content-Length" in response.json()["error"]


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ({"inputs": [IMAGE_DATA, IMAGE_DATA]}, "exactly one input is expected: IMAGE or PIXELS"),
        ({"inputs": [IMAGE_DATA | {"name": "LOGITS"}]}, "unknown input 'LOGITS': expected"),
        (
            {"inputs": [IMAGE_DATA | {"shape": [True]}]},
            "input shape must be a list of non-negative",
        ),
        ({"inputs": [IMAGE_DATA | {"datatype": "INT8"}]}, "inputs.0.datatype: Input should be"),
        (
            {
                "inputs": [IMAGE_DATA],
                "outputs": [{"name": "PROBABILITIES", "parameters": {"classification": 0}}],
            },
            "classification must be a positive integer",
        ),
    ],
    ids=["two-inputs", "unknown-input", "boolean-shape", "unknown-datatype", "classification-0"],
)
def test_a_header_the_wire_model_refuses_is_400_in_the_protocols_words_or_naming_the_field(
    header: dict[str, object], message: str
) -> None:
    """The structure is validated by ``V2InferRequest``; its errors keep the protocol's messages,
    and any other names the field, as a 422 of the query does."""
    with pytest.raises(InvalidInputError) as error:
        parse_request(json.dumps(header).encode(), None, (3, SIZE, SIZE), 64)
    assert str(error.value).startswith(message)


def test_the_asyncio_http_client_is_answered_concurrently(demo_server: ServerProcess) -> None:
    async def scenario() -> list[list[str]]:
        client = triton_aio.InferenceServerClient(demo_server.url.removeprefix("http://"))
        try:
            assert await client.is_server_ready()
            config = await client.get_model_config(MODEL["name"])
            assert config["input"][0]["dims"] == [1]
            answers = await asyncio.gather(
                *(client.infer(MODEL["name"], [_image_input()]) for _ in range(4))
            )
            return [_labels(a.as_numpy("PROBABILITIES")) for a in answers]
        finally:
            await client.close()

    assert asyncio.run(scenario()) == [SHAPES] * 4
