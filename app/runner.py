"""The model on its device: one inference thread, stack -> forward -> softmax.

``ModelRunner.run_batch`` is the batcher's handler. The forward pass runs in a dedicated single
thread so the event loop stays free (``/health`` answers under full load) and CUDA sees one stream
of work from one thread.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch

from app.model.bundle import Bundle, load_bundle

logger = logging.getLogger(__name__)

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class DeviceError(RuntimeError):
    """The configured device or precision cannot be used on this machine."""


@dataclass(frozen=True)
class ScoredClass:
    """One entry of a top-k answer."""

    label: str
    index: int
    score: float


def resolve_device(requested: str, precision: str) -> torch.device:
    """Turn the ``device`` setting into a usable ``torch.device`` or fail with one sentence."""
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(requested)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {requested!r} requested but CUDA is not available here")
        index = device.index or 0
        if index >= torch.cuda.device_count():
            raise DeviceError(
                f"device {requested!r} requested but only {torch.cuda.device_count()} GPU(s) exist"
            )
        device = torch.device("cuda", index)
    elif precision != "fp32":
        raise DeviceError(f"precision {precision} needs a CUDA device; use fp32 on CPU")
    return device


class ModelRunner:
    """Owns the model on one device and runs batches of preprocessed image tensors."""

    def __init__(self, bundle: Bundle, device: torch.device, precision: str) -> None:
        self.bundle = bundle
        self.device = device
        self.precision = precision
        self.dtype = DTYPES[precision]
        self.labels = bundle.manifest.labels
        self.memory_format = (
            torch.channels_last if device.type == "cuda" else torch.contiguous_format
        )
        self.model = bundle.model.to(memory_format=self.memory_format)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        self._closing = threading.Event()  # lets a shut-down cut a long warm-up short
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True

    @classmethod
    def load(cls, model_dir: str, device: str, precision: str) -> ModelRunner:
        """Resolve the device and load a bundle onto it; raises ``BundleError``/``DeviceError``."""
        resolved = resolve_device(device, precision)
        bundle = load_bundle(model_dir, device=resolved, dtype=DTYPES[precision])
        return cls(bundle, resolved, precision)

    @property
    def input_size(self) -> int:
        return self.bundle.manifest.preprocessing.input_size

    def predict(self, images: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Class probabilities (float32, on CPU) for each (3, H, W) tensor, in order.

        On CUDA out-of-memory the batch is split in halves and retried, so one oversized batch
        degrades throughput instead of failing its requests.
        """
        try:
            return self._forward(images)
        except torch.cuda.OutOfMemoryError:
            if len(images) == 1:
                raise
            torch.cuda.empty_cache()
            half = len(images) // 2
            logger.warning("CUDA out of memory at batch %d; retrying as two halves", len(images))
            return self.predict(images[:half]) + self.predict(images[half:])

    def _forward(self, images: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        batch = torch.stack(list(images)).to(
            self.device, self.dtype, non_blocking=True, memory_format=self.memory_format
        )
        with torch.inference_mode():
            logits = self.model(batch)
            probabilities = torch.softmax(logits.float(), dim=1).cpu()
        return list(probabilities.unbind(0))

    async def run_batch(self, images: list[torch.Tensor]) -> list[torch.Tensor]:
        """The batcher's handler: ``predict`` on the inference thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.predict, images)

    async def warm_up(self, max_batch_size: int) -> float:
        """Run every batch size once, on the inference thread, so first requests pay no
        allocation or autotuning cost; returns the seconds it took."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._warm_up, max_batch_size)

    def _warm_up(self, max_batch_size: int) -> float:
        started = time.perf_counter()
        sample = torch.randn(3, self.input_size, self.input_size)
        for size in range(1, max_batch_size + 1):
            if self._closing.is_set():
                break
            self.predict([sample] * size)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter() - started

    def top_k(self, probabilities: torch.Tensor, k: int) -> list[ScoredClass]:
        """The ``k`` most probable classes, highest first."""
        scores, indices = torch.topk(probabilities, min(k, probabilities.numel()))
        return [
            ScoredClass(self.labels[i], i, s)
            for s, i in zip(scores.tolist(), indices.tolist(), strict=True)
        ]

    def close(self) -> None:
        """Stop after the batch in progress; blocks until the inference thread has finished."""
        self._closing.set()
        self._executor.shutdown(wait=True)
