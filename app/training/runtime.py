"""How training runs on its device: seeding and mixed precision.

Kept apart from the loop so ``evaluate`` and ``finetune`` autocast the same way; the device itself
and the dtype names come from ``app.model.devices``, shared with serving.
"""

from __future__ import annotations

import random
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import numpy as np
import torch

from app.model.devices import DTYPES, half_dtype


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) so a run can be repeated."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass(frozen=True)
class Precision:
    """Mixed precision for one device: autocast on CUDA only; a loss scaler only for float16.

    The half type is ``app.model.devices.half_dtype``: bfloat16 where the GPU has it (float32's exponent
    range, so gradients cannot underflow and need no scaler), else float16. CPU autocast is slower
    than float32 for convolutions on most CPUs, so CPU stays float32.
    """

    device: torch.device
    dtype: torch.dtype | None

    @classmethod
    def for_device(cls, device: torch.device) -> Precision:
        return cls(device, half_dtype(device) if device.type == "cuda" else None)

    @property
    def needs_scaler(self) -> bool:
        return self.dtype == torch.float16

    def autocast(self) -> AbstractContextManager[object]:
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def describe(self) -> str:
        """``off``, ``bf16`` or ``fp16``: the names serving's precision setting uses."""
        if self.dtype is None:
            return "off"
        return next(name for name, dtype in DTYPES.items() if dtype == self.dtype)
