"""The Open Inference Protocol over gRPC, driven by Triton's own clients (sync and asyncio) and the
standard health client: the same answers, limits and errors as over HTTP, and hostile messages get
the protocol's codes, never a crash."""

from __future__ import annotations

import asyncio
import json
import struct
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton
import tritonclient.grpc.aio as triton_aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from tests.conftest import DEMO_BUNDLE, ServerProcess, encode, free_port, known_image
from tests.waiting import wait_for

MODEL = json.loads((DEMO_BUNDLE / "model.json").read_text())
NAME, LABELS = MODEL["name"], MODEL["labels"]
SIZE = MODEL["preprocessing"]["input_size"]
SHAPES = ["circle", "star", "cross"]
IMAGES = [encode(known_image(name, seed)) for seed, name in enumerate(SHAPES)]
BUSY = 16  # calls ahead of the one with a deadline: well over a second of the slow model


@pytest.fixture(scope="module")
def client(demo_server: ServerProcess) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(demo_server.grpc_url)


@pytest.fixture
def stub(demo_server: ServerProcess):
    with grpc.insecure_channel(demo_server.grpc_url) as channel:
        yield service_pb2_grpc.GRPCInferenceServiceStub(channel)


def _images(images: list[bytes], shape: list[int] | None = None) -> triton.InferInput:
    shape = shape or [len(images), 1]
    tensor = triton.InferInput("IMAGE", shape, "BYTES")
    tensor.set_data_from_numpy(np.array(images, dtype=np.object_).reshape(shape))
    return tensor


def _labels(probabilities: np.ndarray) -> list[str]:
    return [LABELS[i] for i in probabilities.argmax(axis=1)]


def _code(call, *args, **kwargs) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as error:
        call(*args, **kwargs)
    return error.value.code()


def test_health_metadata_and_config_match_the_http_answers(
    client, demo_server: ServerProcess
) -> None:
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(NAME)
    assert client.get_server_metadata(as_json=True)["extensions"] == [
        "classification",
        "binary_tensor_data",
        "model_configuration",
        "statistics",
        "model_repository",
    ]
    http = httpx.get(demo_server.url + f"/v2/models/{NAME}").json()
    metadata = client.get_model_metadata(NAME, as_json=True)
    # protobuf's JSON mapping writes int64 as strings
    for tensor in metadata["inputs"] + metadata["outputs"]:
        tensor["shape"] = [int(size) for size in tensor["shape"]]
    assert metadata == http
    config = client.get_model_config(NAME, as_json=True)["config"]
    http_config = httpx.get(demo_server.url + f"/v2/models/{NAME}/config").json()
    assert config["max_batch_size"] == http_config["max_batch_size"]
    for grpc_tensor, http_tensor in zip(
        config["input"] + config["output"],
        http_config["input"] + http_config["output"],
        strict=True,
    ):
        assert grpc_tensor["name"] == http_tensor["name"]
        assert grpc_tensor["data_type"] == http_tensor["data_type"]
        assert [int(d) for d in grpc_tensor["dims"]] == http_tensor["dims"]
        assert grpc_tensor.get("optional", False) == http_tensor.get("optional", False)


def test_images_are_classified_with_probabilities_and_the_classification_extension(
    client,
) -> None:
    result = client.infer(NAME, [_images(IMAGES)], request_id="grpc-1")
    assert _labels(result.as_numpy("PROBABILITIES")) == SHAPES
    assert result.as_numpy("ABSTAINED").tolist() == [[False]] * 3
    assert result.get_response().id == "grpc-1"
    outputs = [triton.InferRequestedOutput("PROBABILITIES", class_count=2)]
    ranked = client.infer(NAME, [_images(IMAGES, [3])], outputs=outputs).as_numpy("PROBABILITIES")
    assert ranked.shape == (3, 2)
    assert [row[0].decode().split(":")[2] for row in ranked] == SHAPES


def test_pixels_raw_and_in_typed_contents_answer_alike(client, stub) -> None:
    pixels = np.stack(
        [
            np.asarray(known_image(name, seed).resize((SIZE, SIZE)))
            for seed, name in enumerate(SHAPES)
        ]
    ).transpose(0, 3, 1, 2)
    tensor = triton.InferInput("PIXELS", list(pixels.shape), "UINT8")
    tensor.set_data_from_numpy(pixels.astype(np.uint8))
    raw = client.infer(NAME, [tensor]).as_numpy("PROBABILITIES")
    request = service_pb2.ModelInferRequest(model_name=NAME)
    typed = request.inputs.add(name="PIXELS", datatype="FP32", shape=list(pixels.shape))
    typed.contents.fp32_contents.extend(pixels.astype(np.float32).ravel().tolist())
    response = stub.ModelInfer(request)
    answered = np.frombuffer(response.raw_output_contents[0], dtype="<f4").reshape(3, -1)
    assert _labels(raw) == _labels(answered) == SHAPES
    np.testing.assert_allclose(answered, raw, atol=1e-6)


def test_the_asyncio_client_is_answered_concurrently_in_shared_batches(
    demo_server: ServerProcess,
) -> None:
    async def scenario() -> list[np.ndarray]:
        async with triton_aio.InferenceServerClient(demo_server.grpc_url) as client:
            assert await client.is_server_ready()
            calls = [client.infer(NAME, [_images([image])]) for image in IMAGES * 4]
            return [r.as_numpy("PROBABILITIES") for r in await asyncio.gather(*calls)]

    answers = asyncio.run(scenario())
    assert [_labels(a)[0] for a in answers] == SHAPES * 4


def test_health_service_answers_kubernetes_probes(demo_server: ServerProcess) -> None:
    with grpc.insecure_channel(demo_server.grpc_url) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "inference.GRPCInferenceService", "liveness"):
            answer = health.Check(health_pb2.HealthCheckRequest(service=service))
            assert answer.status == health_pb2.HealthCheckResponse.SERVING, service
        code = _code(health.Check, health_pb2.HealthCheckRequest(service="no.such.Service"))
        assert code == grpc.StatusCode.NOT_FOUND


def test_request_ids_are_echoed_and_calls_counted_in_the_metrics(
    stub, demo_server: ServerProcess
) -> None:
    request = service_pb2.ServerLiveRequest()
    _, call = stub.ServerLive.with_call(request, metadata=(("x-request-id", "probe-7"),))
    assert ("x-request-id", "probe-7") in call.initial_metadata()
    route = "/inference.GRPCInferenceService/ServerLive"
    counted = demo_server.metrics()["resnet_serve_requests_total"]
    assert counted[(("route", route), ("status", "OK"))] >= 1


def _infer(stub, tensor: service_pb2.ModelInferRequest.InferInputTensor, raw: list[bytes]):
    request = service_pb2.ModelInferRequest(model_name=NAME, inputs=[tensor])
    request.raw_input_contents.extend(raw)
    return stub.ModelInfer(request)


def _serialized(*elements: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(e)) + e for e in elements)


def _bytes_input(shape: list[int]):
    return service_pb2.ModelInferRequest.InferInputTensor(
        name="IMAGE", datatype="BYTES", shape=shape
    )


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        # a shape that lies about its data
        (lambda: (_bytes_input([3]), [_serialized(IMAGES[0])]), "ends early"),
        (lambda: (_bytes_input([1]), [_serialized(IMAGES[0]) + b"x"]), "longer than its shape"),
        # raw bytes that are not an image
        (lambda: (_bytes_input([1]), [_serialized(b"\x00" * 100)]), "image 0"),
        # more images than one request may hold
        (lambda: (_bytes_input([10_000]), []), "the limit is"),
        # a datatype or shape the model does not take
        (lambda: (_bytes_input([1, 2]), [_serialized(b"a", b"b")]), "must be BYTES"),
    ],
)
def test_hostile_infer_messages_get_the_protocols_codes(stub, demo_server, build, expected) -> None:
    tensor, raw = build()
    with pytest.raises(grpc.RpcError) as error:
        _infer(stub, tensor, raw)
    assert error.value.code() in (
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    )
    assert expected in error.value.details()
    assert demo_server.alive()


def test_ten_thousand_tiny_tensors_an_oversized_message_and_unknown_models_are_refused(
    stub, demo_server: ServerProcess
) -> None:
    request = service_pb2.ModelInferRequest(model_name=NAME)
    for index in range(10_000):
        request.inputs.add(name=f"T{index}", datatype="UINT8", shape=[1])
        request.raw_input_contents.append(b"\x00")
    with pytest.raises(grpc.RpcError) as error:
        stub.ModelInfer(request)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "exactly one input" in error.value.details()
    huge = service_pb2.ModelInferRequest(model_name=NAME, inputs=[_bytes_input([1])])
    huge.raw_input_contents.append(b"\x00" * (11 * 1024 * 1024))  # over MAX_BODY_BYTES (10 MiB)
    assert _code(stub.ModelInfer, huge) == grpc.StatusCode.RESOURCE_EXHAUSTED
    unknown = service_pb2.ModelInferRequest(model_name="resnet50", inputs=[_bytes_input([1])])
    assert _code(stub.ModelInfer, unknown) == grpc.StatusCode.NOT_FOUND
    wrong_version = service_pb2.ModelMetadataRequest(name=NAME, version="2")
    assert _code(stub.ModelMetadata, wrong_version) == grpc.StatusCode.NOT_FOUND
    assert demo_server.alive() and demo_server.get("/health/live").status_code == 200


def test_a_client_deadline_shorter_than_the_work_ends_the_call_on_the_server(
    start_server, slow_bundle: Path
) -> None:
    server = start_server(model_dir=slow_bundle, max_batch_size=1, grpc_port=free_port())
    server.wait_ready()
    image = encode(known_image("circle", 0))

    async def scenario() -> str:
        async with triton_aio.InferenceServerClient(server.grpc_url) as client:
            busy = [
                asyncio.create_task(client.infer("slow", [_images([image])])) for _ in range(BUSY)
            ]
            await asyncio.to_thread(  # they are ahead of it in the queue: seconds of work
                wait_for,
                lambda: server.metrics()["resnet_serve_requests_in_flight"][()] >= BUSY,
                30,
                "the busy calls in flight",
            )
            try:
                await client.infer("slow", [_images([image])], client_timeout=0.3)
            except InferenceServerException as exc:
                return str(exc.status())
            finally:
                await asyncio.gather(*busy)
            return "answered"

    assert "DEADLINE_EXCEEDED" in asyncio.run(scenario())
    route = "/inference.GRPCInferenceService/ModelInfer"

    def ended_on_the_server() -> bool:
        counted = server.metrics()["resnet_serve_requests_total"]
        return any(
            counted.get((("route", route), ("status", status)), 0) >= 1
            for status in ("DEADLINE_EXCEEDED", "CANCELLED")
        )

    # The server saw the client's deadline: the call ended there too, not only in the client.
    wait_for(ended_on_the_server, 30, "the expired call ended on the server", detail=server.logs)
    assert (
        server.metrics()["resnet_serve_requests_total"][(("route", route), ("status", "OK"))]
        == BUSY
    )


def test_api_keys_guard_inference_but_not_probes_or_metadata(start_server) -> None:
    server = start_server(api_keys="k-grpc", grpc_port=free_port()).wait_ready()
    client = triton.InferenceServerClient(server.grpc_url)
    assert client.is_server_ready() and client.get_model_metadata(NAME).name == NAME
    for headers, status in (
        (None, "UNAUTHENTICATED"),
        ({"authorization": "Bearer nope"}, "UNAUTHENTICATED"),
    ):
        with pytest.raises(InferenceServerException) as error:
            client.infer(NAME, [_images(IMAGES[:1])], headers=headers)
        assert status in str(error.value.status())
    keyed = client.infer(NAME, [_images(IMAGES[:1])], headers={"authorization": "Bearer k-grpc"})
    assert _labels(keyed.as_numpy("PROBABILITIES")) == SHAPES[:1]


def test_sigterm_lets_running_grpc_calls_finish_and_refuses_new_ones(
    start_server, slow_bundle: Path
) -> None:
    server = start_server(
        model_dir=slow_bundle, max_batch_size=1, drain_timeout_s=60, grpc_port=free_port()
    ).wait_ready()
    image = encode(known_image("circle", 0))

    async def scenario() -> tuple[list[object], grpc.StatusCode | None]:
        async with triton_aio.InferenceServerClient(server.grpc_url) as client:
            calls = [
                asyncio.create_task(client.infer("slow", [_images([image])])) for _ in range(4)
            ]
            await asyncio.to_thread(
                wait_for,
                lambda: server.metrics()["resnet_serve_requests_in_flight"][()] >= 4,
                30,
                "four gRPC calls in flight",
            )
            server.process.terminate()
            await asyncio.to_thread(
                wait_for, lambda: "draining" in server.get("/health/ready").text, 10, "draining"
            )
            refused = None
            try:
                await client.infer("slow", [_images([image])])
            except InferenceServerException as exc:
                refused = exc.status()
            return await asyncio.gather(*calls, return_exceptions=True), refused

    answers, refused = asyncio.run(scenario())
    assert all(not isinstance(answer, Exception) for answer in answers), answers
    assert refused is not None and "UNAVAILABLE" in str(refused)
    assert server.process.wait(60) == 0
