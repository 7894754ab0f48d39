"""Where and how training runs: device choice, seeding and mixed precision.

Kept apart from the loop so ``evaluate`` and ``finetune`` resolve ``--device`` the same way.
"""

from __future__ import annotations

import random
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import numpy as np
import torch


def resolve_device(name: str) -> torch.device:
    """``auto`` -> first CUDA device if there is one, else CPU; ``cpu``, ``cuda`` or ``cuda:N`` as given.

    Asking for CUDA on a machine without it is a ``ValueError`` rather than a late crash.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from exc
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device {name!r}; use auto, cpu, cuda or cuda:N")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} requested but CUDA is not available")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ValueError(f"device {name!r} requested but only {count} CUDA device(s) exist")
    return device


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) so a run can be repeated."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass(frozen=True)
class Precision:
    """Mixed precision for one device: autocast on CUDA only; a loss scaler only for float16.

    bfloat16 keeps float32's exponent range, so gradients cannot underflow and need no scaler.
    CPU autocast is slower than float32 for convolutions on most CPUs, so CPU stays float32.
    """

    device: torch.device
    dtype: torch.dtype | None

    @classmethod
    def for_device(cls, device: torch.device) -> Precision:
        if device.type != "cuda":
            return cls(device, None)
        with torch.cuda.device(device):
            bf16 = torch.cuda.is_bf16_supported()
        return cls(device, torch.bfloat16 if bf16 else torch.float16)

    @property
    def needs_scaler(self) -> bool:
        return self.dtype == torch.float16

    def autocast(self) -> AbstractContextManager[object]:
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def describe(self) -> str:
        return "off" if self.dtype is None else str(self.dtype).removeprefix("torch.")
