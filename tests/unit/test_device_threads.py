"""Every thread that touches CUDA is bound to the model's device, so ``cuda:1`` means device 1.

A thread starts on device 0: events, allocations and graph captures made on an unbound thread go to
device 0 whatever the model is on. No GPU is needed to see which device each pool's threads select:
``torch.cuda.set_device`` is recorded instead of called.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from app.model.preprocessing import PreprocessingSpec
from app.serving.explainer import _explainer_thread
from app.serving.gpu_decode import GpuJpegDecoder, StreamOrder
from app.serving.runner import RunnerOptions, inference_threads, intra_op_threads

SECOND_GPU = torch.device("cuda", 1)


@pytest.fixture
def bound(monkeypatch: pytest.MonkeyPatch) -> dict[str, torch.device]:
    """Thread name -> the device it selected."""
    selected: dict[str, torch.device] = {}

    def record(device: torch.device) -> None:
        selected[threading.current_thread().name] = device

    monkeypatch.setattr(torch.cuda, "set_device", record)
    return selected


def _run_on_every_thread(pool: ThreadPoolExecutor, count: int) -> None:
    barrier = threading.Barrier(count)  # each task waits for the others: one per thread
    for future in [pool.submit(barrier.wait, 5) for _ in range(count)]:
        future.result()
    pool.shutdown()


def test_inference_threads_select_the_models_device(bound: dict[str, torch.device]) -> None:
    pool = inference_threads(SECOND_GPU, RunnerOptions(batches_in_flight=2))
    _run_on_every_thread(pool, 2)
    assert sorted(bound) == ["inference_0", "inference_1"]
    assert set(bound.values()) == {SECOND_GPU}


def test_the_grad_cam_thread_selects_the_models_device(bound: dict[str, torch.device]) -> None:
    _run_on_every_thread(_explainer_thread(SECOND_GPU), 1)
    assert bound == {"explain_0": SECOND_GPU}


def test_the_nvjpeg_thread_selects_the_models_device(bound: dict[str, torch.device]) -> None:
    spec = PreprocessingSpec(input_size=56, resize_size=64)
    decoder = GpuJpegDecoder(spec, SECOND_GPU, 4, 4, order=StreamOrder())
    _run_on_every_thread(decoder._thread, 1)
    assert bound == {"gpu-decode_0": SECOND_GPU}


def test_cpu_threads_select_nothing(bound: dict[str, torch.device]) -> None:
    _run_on_every_thread(inference_threads(torch.device("cpu"), RunnerOptions()), 1)
    _run_on_every_thread(_explainer_thread(torch.device("cpu")), 1)
    assert bound == {}


def test_inference_threads_on_cuda_stage_batches_on_one_intra_op_thread() -> None:
    """Their CPU work is a copy into pinned memory; more threads' OpenMP helpers spin after it."""
    assert intra_op_threads(SECOND_GPU, RunnerOptions()) == 1
    assert intra_op_threads(SECOND_GPU, RunnerOptions(torch_threads=4)) == 4
    assert intra_op_threads(torch.device("cpu"), RunnerOptions()) == 0  # torch's default
    assert intra_op_threads(torch.device("cpu"), RunnerOptions(torch_threads=2)) == 2
