"""The model runner: batching never changes answers, uint8 input is normalised as in training,
and CUDA out-of-memory splits a batch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from app.model.bundle import Calibration, load_bundle, write_manifest
from app.model.devices import DeviceError
from app.model.preprocessing import eval_transform, pixel_transform
from app.serving.builder import load_runner
from app.serving.runner import ModelRunner, RunnerOptions, replica_memory_fraction
from app.settings import Settings
from app.training.demo_data import CLASSES
from tests.conftest import DEMO_BUNDLE, known_image, write_bundle


def pixels() -> torch.Tensor:
    return torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> ModelRunner:
    torch.manual_seed(0)
    directory = write_bundle(tmp_path_factory.mktemp("runner") / "tiny", ["a", "b", "c"])
    return ModelRunner(load_bundle(directory), torch.device("cpu"), "fp32", RunnerOptions())


def test_a_batch_of_64_gives_the_same_answers_as_one_at_a_time(runner: ModelRunner) -> None:
    images = [pixels() for _ in range(64)]
    batched = runner.predict(images)
    alone = [runner.predict([image])[0] for image in images]
    torch.testing.assert_close(torch.stack(batched), torch.stack(alone), atol=1e-5, rtol=1e-4)
    assert all(abs(p.sum().item() - 1) < 1e-5 for p in batched)


def test_out_of_memory_splits_the_batch_and_keeps_the_order(
    runner: ModelRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    images = [pixels() for _ in range(10)]
    expected = runner.predict(images)
    forward = runner._forward
    sizes: list[int] = []

    def small_batches_only(batch: list[torch.Tensor]) -> list[torch.Tensor]:
        sizes.append(len(batch))
        if len(batch) > 3:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return forward(batch)

    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    monkeypatch.setattr(runner, "_forward", small_batches_only)
    torch.testing.assert_close(torch.stack(runner.predict(images)), torch.stack(expected))
    assert sizes == [10, 5, 2, 3, 5, 2, 3]


def test_out_of_memory_on_a_single_image_is_raised(
    runner: ModelRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    def always_oom(batch: list[torch.Tensor]) -> list[torch.Tensor]:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    monkeypatch.setattr(runner, "_forward", always_oom)
    with pytest.raises(torch.cuda.OutOfMemoryError):
        runner.predict([pixels()] * 2)


def test_top_k_is_sorted_and_labelled(runner: ModelRunner) -> None:
    top = runner.top_k(torch.tensor([0.2, 0.5, 0.3]), 2)
    assert [(c.label, c.index) for c in top] == [("b", 1), ("c", 2)]
    assert top[0].score == pytest.approx(0.5)


def test_uint8_batches_give_the_probabilities_of_the_training_transform(
    runner: ModelRunner,
) -> None:
    photo = Image.fromarray(np.random.default_rng(3).integers(0, 256, (50, 70, 3), dtype=np.uint8))
    spec = runner.bundle.manifest.preprocessing
    with torch.inference_mode():
        expected = torch.softmax(runner.model(eval_transform(spec)(photo)[None]), dim=1)[0]
    (got,) = runner.predict([pixel_transform(spec)(photo)])
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_a_calibrated_bundle_serves_softmax_of_logits_over_its_temperature(
    tmp_path: Path,
) -> None:
    torch.manual_seed(0)
    directory = write_bundle(tmp_path / "calibrated", ["a", "b", "c"])
    manifest = load_bundle(directory).manifest
    calibration = Calibration(temperature=2.5, abstain_threshold=0.5)
    write_manifest(directory, manifest.model_copy(update={"calibration": calibration}))
    calibrated = ModelRunner(load_bundle(directory), torch.device("cpu"), "fp32", RunnerOptions())
    assert calibrated.temperature == 2.5
    images = [pixels() for _ in range(4)]
    spec = calibrated.bundle.manifest.preprocessing
    with torch.inference_mode():
        batch = torch.stack(images).float().div(255)
        mean = torch.tensor(spec.mean).view(1, 3, 1, 1)
        std = torch.tensor(spec.std).view(1, 3, 1, 1)
        logits = calibrated.model((batch - mean) / std)
    got = torch.stack(calibrated.predict(images))
    torch.testing.assert_close(got, torch.softmax(logits / 2.5, dim=1), atol=1e-5, rtol=1e-4)
    assert not torch.allclose(got, torch.softmax(logits, dim=1), atol=1e-3)
    calibrated.close()


def test_torch_threads_apply_on_the_inference_thread(tmp_path: Path) -> None:
    directory = write_bundle(tmp_path / "tiny", ["a", "b"])
    runner = ModelRunner.load(str(directory), "cpu", "auto", RunnerOptions(torch_threads=1))
    try:
        assert runner.precision == "fp32"
        assert runner._executor.submit(torch.get_num_threads).result() == 1
    finally:
        runner.close()


def test_half_precision_on_the_cpu_is_refused_before_loading(tmp_path: Path) -> None:
    with pytest.raises(DeviceError, match="precision fp16 needs a CUDA device; use fp32 on CPU"):
        ModelRunner.load(str(tmp_path / "never-read"), "cpu", "fp16", RunnerOptions())


def test_gpu_decoding_on_a_cpu_device_is_refused_before_loading(tmp_path: Path) -> None:
    settings = Settings(model_dir=tmp_path / "never-read", device="cpu", gpu_decode=True)
    with pytest.raises(DeviceError, match="gpu_decode needs a CUDA device"):
        load_runner(settings)


def test_half_precision_casts_the_body_and_keeps_the_deciding_head_in_fp32() -> None:
    # bf16 kernels run (slowly) on the CPU too, so the runner's cast can be checked here.
    half = ModelRunner(load_bundle(DEMO_BUNDLE), torch.device("cpu"), "bf16", RunnerOptions())
    assert half.model.conv1.weight.dtype == torch.bfloat16
    assert half.model.layer4[-1].bn2.weight.dtype == torch.bfloat16
    assert half.model.fc.weight.dtype == half.model.fc.bias.dtype == torch.float32
    full = ModelRunner(load_bundle(DEMO_BUNDLE), torch.device("cpu"), "fp32", RunnerOptions())
    # The fp32 head is the one in the bundle, not a bf16 round trip of it.
    assert torch.equal(half.model.fc.weight, full.model.fc.weight)
    images = [
        pixel_transform(full.bundle.manifest.preprocessing)(known_image(n, 900 + i))
        for i, n in enumerate(CLASSES)
    ]
    got, expected = torch.stack(half.predict(images)), torch.stack(full.predict(images))
    assert got.dtype == torch.float32
    assert got.argmax(1).tolist() == expected.argmax(1).tolist()


def test_replicas_share_a_gpu_in_equal_parts_below_the_whole() -> None:
    assert replica_memory_fraction(1) == 1.0
    assert replica_memory_fraction(4) == pytest.approx(0.95 / 4)
    assert replica_memory_fraction(2) * 2 < 1
