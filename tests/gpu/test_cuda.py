"""The CUDA paths: skipped on machines without a GPU (CI), run wherever one is present."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import torch

from app.model.bundle import load_bundle
from app.model.devices import DeviceError, resolve_device
from app.model.preprocessing import decode_image, eval_transform, pixel_transform
from app.serving.gpu_decode import EncodedJpeg, GpuJpegDecoder
from app.serving.runner import ModelRunner, RunnerOptions, abstains
from app.training.demo_data import CLASSES
from tests.conftest import DEMO_BUNDLE, encode, known_image

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
# fp32 on the GPU is IEEE fp32 (the runner turns TF32 off, app.model.devices.exact_fp32), so only the
# order of summation differs from the CPU: 1e-4 of a probability. The half types round the body's
# activations (8 and 11 significant bits); the head stays fp32.
TOLERANCE = {"fp32": 1e-4, "fp16": 2e-2, "bf16": 3e-2}


def _native_half() -> str:
    """What ``auto`` should pick: bf16 only where the GPU has it in hardware (Ampere and later)."""
    return "bf16" if torch.cuda.get_device_capability() >= (8, 0) else "fp16"


def _images(count: int) -> list[bytes]:
    return [encode(known_image(CLASSES[i % len(CLASSES)], 300 + i)) for i in range(count)]


def _cpu_reference(images: list[bytes]) -> tuple[list[torch.Tensor], torch.Tensor]:
    """uint8 inputs and the fp32 CPU model's probabilities for them."""
    bundle = load_bundle(DEMO_BUNDLE)
    spec = bundle.manifest.preprocessing
    decoded = [decode_image(data, 10**8, spec.resize_size) for data in images]
    calibration = bundle.manifest.calibration
    temperature = calibration.temperature if calibration else 1.0  # served scores are calibrated
    with torch.inference_mode():
        logits = bundle.model(torch.stack([eval_transform(spec)(image) for image in decoded]))
        expected = torch.softmax(logits / temperature, dim=1)
    return [pixel_transform(spec)(image) for image in decoded], expected


def _runner(precision: str, **options: object) -> ModelRunner:
    runner = ModelRunner.load(str(DEMO_BUNDLE), "cuda", precision, RunnerOptions(**options))
    runner._warm_up()
    return runner


@pytest.mark.parametrize("cuda_graphs", [False, True])
@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
def test_cuda_runner_matches_the_cpu_model(precision: str, cuda_graphs: bool) -> None:
    pixels, expected = _cpu_reference(_images(5))
    runner = _runner(precision, max_batch_size=8, cuda_graphs=cuda_graphs)
    assert runner.memory_format is torch.channels_last
    assert runner.model.fc.weight.dtype == torch.float32  # the head decides abstaining
    for size in (1, 3, 5):  # 3 and 5 are padded to the buckets 4 and 8 with graphs
        got = torch.stack(runner.predict(pixels[:size]))
        torch.testing.assert_close(got, expected[:size], atol=TOLERANCE[precision], rtol=0)
        assert got.argmax(1).tolist() == expected[:size].argmax(1).tolist()
    runner.close()


def test_cuda_devices_resolve_with_their_index_and_a_missing_one_is_refused() -> None:
    assert resolve_device("auto") == resolve_device("cuda") == torch.device("cuda", 0)
    count = torch.cuda.device_count()
    with pytest.raises(DeviceError, match=f"only {count} CUDA device"):
        resolve_device(f"cuda:{count}")


def test_auto_precision_is_bf16_where_the_gpu_has_it() -> None:
    runner = ModelRunner.load(str(DEMO_BUNDLE), "cuda", "auto", RunnerOptions())
    assert runner.precision == _native_half()
    runner.close()


@pytest.mark.parametrize("cuda_graphs", [False, True])
def test_two_batches_in_flight_keep_every_answer_with_its_batch(cuda_graphs: bool) -> None:
    pixels, expected = _cpu_reference(_images(16))
    runner = _runner("fp32", max_batch_size=16, batches_in_flight=2, cuda_graphs=cuda_graphs)
    batches = [list(range(start, start + size)) for start, size in ((0, 16), (3, 7), (9, 1))] * 20
    with ThreadPoolExecutor(2) as threads:
        results = list(threads.map(lambda rows: runner.predict([pixels[i] for i in rows]), batches))
    for rows, got in zip(batches, results, strict=True):
        torch.testing.assert_close(torch.stack(got), expected[rows], atol=1e-4, rtol=0)
    runner.close()


def test_server_on_cuda_defaults_to_the_fast_path_and_answers(start_server) -> None:
    server = start_server(device="cuda").wait_ready()
    health = server.get("/health").json()
    assert health["device"] == "cuda:0"
    assert health["precision"] == _native_half()
    response = httpx.post(
        server.url + "/predict",
        content=encode(known_image("ring", 301)),
        headers={"Content-Type": "image/jpeg"},
    )
    assert response.json()["results"][0]["predictions"][0]["label"] == "ring"


def test_gpu_decoding_gives_the_predictions_of_the_cpu_path() -> None:
    images = _images(16)
    pixels, expected = _cpu_reference(images)
    spec = load_bundle(DEMO_BUNDLE).manifest.preprocessing
    decoder = GpuJpegDecoder(spec, torch.device("cuda"), max_batch_size=16, max_queue_size=16)
    on_gpu = decoder.decode_batch([EncodedJpeg(data, 10**6) for data in images])
    assert all(image is not None and image.is_cuda for image in on_gpu)
    pixel_error = [
        (g.cpu().float() - p.float()).abs().mean().item()
        for g, p in zip(on_gpu, pixels, strict=True)
    ]
    assert max(pixel_error) < 4  # nvJPEG and GPU resizing against libjpeg's DCT scaling and Pillow
    runner = _runner("fp32", max_batch_size=16)
    got = torch.stack(runner.predict(on_gpu))
    assert got.argmax(1).tolist() == expected.argmax(1).tolist()
    torch.testing.assert_close(got, expected, atol=5e-2, rtol=0)
    runner.close()


def test_server_with_gpu_decoding_answers_jpegs_and_pngs(start_server) -> None:
    server = start_server(device="cuda", gpu_decode="true").wait_ready()
    for name, fmt in (("ring", "JPEG"), ("star", "PNG")):
        response = httpx.post(
            server.url + "/predict",
            files={"file": (f"x.{fmt.lower()}", encode(known_image(name, 302), fmt))},
        )
        assert response.json()["results"][0]["predictions"][0]["label"] == name


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_half_precision_abstains_where_fp32_does(precision: str) -> None:
    pixels, expected = _cpu_reference(_images(32))
    runner = _runner(precision, max_batch_size=32)
    threshold = runner.bundle.manifest.abstain_threshold
    got = runner.predict(pixels)
    # Wherever fp32's top score is clear of the threshold by more than the precision's tolerance,
    # the decision must be fp32's; the precision step of the GPU check reports the rest.
    clear = [abs(float(p.max()) - threshold) > TOLERANCE[precision] for p in expected]
    decisions = [abstains(p, threshold) for p, c in zip(got, clear, strict=True) if c]
    assert decisions == [abstains(p, threshold) for p, c in zip(expected, clear, strict=True) if c]
    runner.close()


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs a second CUDA GPU")
@pytest.mark.parametrize("cuda_graphs", [False, True])
def test_a_model_on_the_second_gpu_runs_there_and_leaves_the_first_alone(cuda_graphs: bool) -> None:
    pixels, expected = _cpu_reference(_images(8))
    before = torch.cuda.memory_allocated(0)
    runner = ModelRunner.load(
        str(DEMO_BUNDLE), "cuda:1", "fp32", RunnerOptions(max_batch_size=8, cuda_graphs=cuda_graphs)
    )
    runner._warm_up()
    got = torch.stack(runner.predict(pixels))
    torch.testing.assert_close(got, expected, atol=TOLERANCE["fp32"], rtol=0)
    assert torch.cuda.memory_allocated(1) > 0
    assert torch.cuda.memory_allocated(0) == before
    runner.close()
