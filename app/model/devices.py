"""Where a model runs and at which precision: one vocabulary for serving and training.

Serving (``RESNET_SERVE_DEVICE``/``PRECISION``), ``finetune --device`` and ``--weights-dtype`` and
``evaluate --device`` all resolve here, so the same word means the same thing everywhere and a
machine that cannot honour it is refused with the same sentence.
"""

from __future__ import annotations

from typing import Literal

import torch

DtypeName = Literal["fp32", "fp16", "bf16"]
DTYPES: dict[DtypeName, torch.dtype] = {
    "fp32": torch.float32,
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
}
DEVICE_NAMES = "auto, cpu, cuda or cuda:N"


class DeviceError(ValueError):
    """The requested device or precision cannot be used on this machine.

    A ``ValueError`` like every other bad option, so the training CLI reports it as one.
    """


def resolve_device(requested: str) -> torch.device:
    """``auto`` -> the first CUDA device if there is one, else the CPU; ``cpu``, ``cuda`` and
    ``cuda:N`` as given, checked against this machine. CUDA devices always carry their index."""
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(requested)
    except RuntimeError as exc:
        raise DeviceError(f"unknown device {requested!r}; use {DEVICE_NAMES}") from exc
    if device.type == "cpu" and not device.index:  # "cpu" or "cpu:0"; there is one CPU device
        return torch.device("cpu")
    if device.type != "cuda":
        raise DeviceError(f"unsupported device {requested!r}; use {DEVICE_NAMES}")
    if not torch.cuda.is_available():
        raise DeviceError(f"device {requested!r} requested but CUDA is not available here")
    count = torch.cuda.device_count()
    index = device.index or 0
    if index >= count:
        raise DeviceError(f"device {requested!r} requested but only {count} CUDA device(s) exist")
    return torch.device("cuda", index)


def half_dtype(device: torch.device) -> torch.dtype:
    """The 16-bit type for a CUDA device: bfloat16 where the hardware has it, else float16.

    bfloat16 keeps float32's exponent range (no overflow, no loss scaler); GPUs before Ampere only
    emulate it, slowly, so they get float16.
    """
    if device.type != "cuda":
        raise DeviceError(f"half precision needs a CUDA device, not {device}")
    with torch.cuda.device(device):
        native_bf16 = torch.cuda.is_bf16_supported(including_emulation=False)
    return torch.bfloat16 if native_bf16 else torch.float16


def resolve_precision(requested: str, device: torch.device) -> DtypeName:
    """``auto`` -> the half type of a CUDA device, fp32 on the CPU; an explicit name is checked.

    fp16 and bf16 on the CPU are refused: the CPU kernels for them are slower than fp32.
    """
    if requested == "auto":
        if device.type != "cuda":
            return "fp32"
        return "bf16" if half_dtype(device) == torch.bfloat16 else "fp16"
    if requested not in DTYPES:
        raise DeviceError(f"unknown precision {requested!r}; use auto, {', '.join(DTYPES)}")
    if requested != "fp32" and device.type != "cuda":
        raise DeviceError(f"precision {requested} needs a CUDA device; use fp32 on CPU")
    return requested


def bind_thread(device: torch.device) -> None:
    """Make ``device`` the current CUDA device of the calling thread (nothing on the CPU).

    Every thread starts on device 0: a thread that touches CUDA without this records events,
    allocates and captures graphs on device 0, whatever device the model is on. Used as the
    initializer of every thread pool that runs CUDA work (inference, nvJPEG decoding, Grad-CAM).
    """
    if device.type == "cuda":
        torch.cuda.set_device(device)


def exact_fp32() -> None:
    """Make float32 convolutions and matmuls on CUDA IEEE float32, not TF32.

    cuDNN computes fp32 convolutions in TF32 by default on Ampere and later (10 mantissa bits),
    a difference of about 1e-3 in the probabilities: ``PRECISION=fp32`` asks for float32 and
    gets it. Process-wide: a process serves one model at one precision.
    """
    torch.backends.cudnn.conv.fp32_precision = "ieee"  # type: ignore[attr-defined]  # not in torch's stubs yet
    torch.backends.cuda.matmul.fp32_precision = "ieee"
