"""Device and precision names: one vocabulary for serving and training, each refusal one sentence.

CUDA's presence is patched, so these pin the same behaviour on a CPU-only machine and on a GPU host.
"""

from __future__ import annotations

import pytest
import torch

from app.model.devices import DeviceError, half_dtype, resolve_device, resolve_precision

CPU = torch.device("cpu")


@pytest.fixture
def no_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture
def one_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)


def test_auto_is_the_cpu_without_cuda(no_cuda: None) -> None:
    assert resolve_device("auto") == CPU
    assert resolve_device("cpu") == CPU
    assert resolve_device("cpu:0") == CPU


@pytest.mark.parametrize("name", ["cuda", "cuda:0"])
def test_cuda_without_cuda_is_refused_with_one_sentence(no_cuda: None, name: str) -> None:
    with pytest.raises(DeviceError) as refused:
        resolve_device(name)
    assert str(refused.value) == f"device {name!r} requested but CUDA is not available here"


def test_auto_and_cuda_resolve_to_the_first_gpu_with_its_index(one_gpu: None) -> None:
    assert resolve_device("auto") == torch.device("cuda", 0)
    assert resolve_device("cuda") == torch.device("cuda", 0)
    assert resolve_device("cuda:0") == torch.device("cuda", 0)


def test_a_gpu_index_beyond_the_machine_is_refused(one_gpu: None) -> None:
    with pytest.raises(
        DeviceError, match=r"^device 'cuda:1' requested but only 1 CUDA device\(s\) exist$"
    ):
        resolve_device("cuda:1")


@pytest.mark.parametrize(
    ("name", "sentence"),
    [
        ("gpu", "unknown device 'gpu'; use auto, cpu, cuda or cuda:N"),
        ("", "unknown device ''; use auto, cpu, cuda or cuda:N"),
        ("cuda:x", "unknown device 'cuda:x'; use auto, cpu, cuda or cuda:N"),
        ("mps", "unsupported device 'mps'; use auto, cpu, cuda or cuda:N"),
        ("cpu:1", "unsupported device 'cpu:1'; use auto, cpu, cuda or cuda:N"),
    ],
)
def test_bad_device_names_are_refused_naming_the_choices(name: str, sentence: str) -> None:
    with pytest.raises(DeviceError) as refused:
        resolve_device(name)
    assert str(refused.value) == sentence


def test_device_errors_are_value_errors_so_the_training_cli_reports_them() -> None:
    assert issubclass(DeviceError, ValueError)


def test_precision_on_the_cpu_is_fp32_and_half_types_are_refused() -> None:
    assert resolve_precision("auto", CPU) == "fp32"
    assert resolve_precision("fp32", CPU) == "fp32"
    for half in ("fp16", "bf16"):
        with pytest.raises(DeviceError) as refused:
            resolve_precision(half, CPU)
        assert str(refused.value) == f"precision {half} needs a CUDA device; use fp32 on CPU"
    with pytest.raises(DeviceError, match="half precision needs a CUDA device, not cpu"):
        half_dtype(CPU)


@pytest.mark.parametrize("name", ["float16", "fp8", "half"])
def test_unknown_precision_names_are_refused(name: str) -> None:
    with pytest.raises(
        DeviceError, match=rf"^unknown precision '{name}'; use auto, fp32, fp16, bf16$"
    ):
        resolve_precision(name, CPU)
