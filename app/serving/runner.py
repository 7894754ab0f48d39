"""The model on its device: uint8 batch -> normalise -> forward -> softmax, on inference threads.

``ModelRunner.run_batch`` is the batcher's handler. Forward passes run on dedicated threads so the
event loop stays free (``/health`` answers under full load). On CUDA the host side of a batch (stack
into pinned memory, copy, launch) is serialised by a lock, so the GPU sees one ordered stream of
work, while the wait for the results happens outside it: with two batches in flight, batch k+1 is
stacked and queued on the GPU while batch k computes.
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
from app.model.devices import (
    DTYPES,
    DtypeName,
    bind_thread,
    exact_fp32,
    resolve_device,
    resolve_precision,
)
from app.model.preprocessing import Normalizer
from app.model.resnet import ResNet
from app.serving.cuda_graphs import CapturedForward, batch_buckets

logger = logging.getLogger(__name__)
# Of a GPU shared by replicas, the part no replica's allocator may take: CUDA contexts (about
# 0.5 GB each) and nvJPEG's own buffers live outside torch's caching allocator.
SHARED_GPU_RESERVE = 0.05


@dataclass(frozen=True)
class ScoredClass:
    """One entry of a top-k answer."""

    label: str
    index: int
    score: float


@dataclass(frozen=True)
class RunnerOptions:
    """How batches run; the defaults are the CPU behaviour."""

    max_batch_size: int = 32
    cuda_graphs: bool = False
    batches_in_flight: int = 1
    torch_threads: int = 0
    device_memory_fraction: float = 1.0  # of a CUDA device's memory; below 1 with replicas


def replica_memory_fraction(replicas: int) -> float:
    """Each replica's share of one GPU's memory: equal parts of what the reserve leaves.

    Without a bound the first replica's caching allocator can keep blocks the others then cannot
    get, and they fail with out-of-memory while it sits on free memory.
    """
    return 1.0 if replicas == 1 else (1 - SHARED_GPU_RESERVE) / replicas


def serving_model(model: ResNet, dtype: torch.dtype, memory_format: torch.memory_format) -> ResNet:
    """``model`` (float32) with its body cast to ``dtype`` and its head kept in float32.

    The head's logits decide abstaining: divided by the calibrated temperature (0.25 for the demo)
    their rounding errors grow four-fold, and bf16 logits flip answers near a threshold like
    0.99993. A float32 head over the low-precision features costs one small matmul.
    """
    for child in model.children():
        if child is not model.fc:
            child.to(dtype)
    return model.to(memory_format=memory_format)


def abstains(
    probabilities: torch.Tensor, threshold: float, rejected: frozenset[int] = frozenset()
) -> bool:
    """Too unsure to act on (top score below ``threshold``), or the top class is one of
    ``rejected``, classes that mean "none of these" (a trained clutter class)."""
    score, index = probabilities.max(dim=0)
    return float(score) < threshold or int(index) in rejected


def batches_in_flight(device: torch.device, options: RunnerOptions) -> int:
    """``options.batches_in_flight`` on CUDA, one on CPU (a CPU forward pass already uses every
    core, so a second one in flight would only compete)."""
    return options.batches_in_flight if device.type == "cuda" else 1


def intra_op_threads(device: torch.device, options: RunnerOptions) -> int:
    """Intra-op threads of each inference thread: the setting, else torch's default (0) on CPU and
    one on CUDA.

    On CUDA an inference thread's CPU work is staging (stacking a batch into pinned memory, a copy
    of a few MB at most), which more threads barely speed up; and after every parallel region GNU
    OpenMP's helper threads spin for the next one. With a model that answers at once on a 2-core
    host, two spinning helpers were 50-75% of the server's CPU (3.5-4.7 ms of 4.7 per image over
    /predict); on a 16-core GPU host, fifteen of them spin after every batch.
    """
    if options.torch_threads:
        return options.torch_threads
    return 1 if device.type == "cuda" else 0


def inference_threads(device: torch.device, options: RunnerOptions) -> ThreadPoolExecutor:
    """The threads that run forward passes, one per batch in flight."""
    threads = intra_op_threads(device, options)

    def set_up_thread() -> None:
        bind_thread(device)
        if threads:  # per thread in OpenMP: set where the forward passes run
            torch.set_num_threads(threads)

    count = batches_in_flight(device, options)
    return ThreadPoolExecutor(count, "inference", initializer=set_up_thread)


class ModelRunner:
    """Owns the model on one device and runs batches of uint8 image tensors (3, H, W).

    ``bundle`` is loaded in float32 (``load`` does so); the runner casts all but its head to
    ``precision`` (``serving_model``).
    """

    def __init__(
        self,
        bundle: Bundle,
        device: torch.device,
        precision: DtypeName,
        options: RunnerOptions,
        threads: ThreadPoolExecutor | None = None,
    ) -> None:
        self.bundle = bundle
        self.load_seconds = 0.0  # set by `load`: how long reading the weights onto the device took
        self.device = device
        self.precision = precision
        self.options = options
        self.dtype = DTYPES[precision]
        self.labels = bundle.manifest.labels
        # Softmax temperature from the bundle's calibration; a plain float, so a captured CUDA graph
        # bakes it in like any other constant of _compute.
        self.temperature = bundle.manifest.temperature
        self.on_cuda = device.type == "cuda"
        self.memory_format = torch.channels_last if self.on_cuda else torch.contiguous_format
        self.model = serving_model(bundle.model, self.dtype, self.memory_format)
        self.normalize = Normalizer(bundle.manifest.preprocessing, device)
        self.batches_in_flight = batches_in_flight(device, options)
        self._executor = threads or inference_threads(device, options)
        self._launch = threading.Lock()  # one host thread at a time enqueues GPU work
        self._captured: CapturedForward | None = None
        self._closing = threading.Event()  # lets a shut-down cut a long warm-up short
        if self.on_cuda:
            torch.backends.cudnn.benchmark = True
            if self.dtype == torch.float32:
                exact_fp32()

    @classmethod
    def load(
        cls, model_dir: str, device: torch.device | str, precision: str, options: RunnerOptions
    ) -> ModelRunner:
        """Load a bundle onto ``device`` (resolved here when given by name, as ``"auto"``);
        raises ``BundleError``/``DeviceError``."""
        resolved = device if isinstance(device, torch.device) else resolve_device(device)
        precision = resolve_precision(precision, resolved)  # before the weights are read
        if resolved.type == "cuda" and options.device_memory_fraction < 1:
            torch.cuda.set_per_process_memory_fraction(options.device_memory_fraction, resolved)
        threads = inference_threads(resolved, options)
        # GNU OpenMP gives each thread that runs parallel work its own pool of helper threads. With
        # the model loaded by one thread and run by another, a CPU forward pass measured about 40%
        # slower than with one thread doing both: load on the thread that will run the model.
        started = time.perf_counter()
        load = threads.submit(load_bundle, model_dir, device=resolved)  # float32: serving_model
        try:
            runner = cls(load.result(), resolved, precision, options, threads)
        except BaseException:
            threads.shutdown(wait=False)
            raise
        runner.load_seconds = time.perf_counter() - started
        return runner

    @property
    def max_batch_size(self) -> int:
        """The largest batch: warmed up here, and the batcher's limit (the one copy of it)."""
        return self.options.max_batch_size

    @property
    def weight_bytes(self) -> int:
        """What the served model's parameters and buffers hold on its device: what a model
        repository's memory limit counts (activations, workspace and graphs come on top)."""
        tensors = [*self.model.parameters(), *self.model.buffers()]
        return sum(t.numel() * t.element_size() for t in tensors)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        size = self.bundle.manifest.preprocessing.input_size
        return (3, size, size)

    def _compute(self, batch: torch.Tensor) -> torch.Tensor:
        """uint8 (N, 3, H, W) on the device -> float32 probabilities (N, classes) on the device.

        The probabilities are ``softmax(logits / T)`` with the bundle's calibrated temperature,
        from the float32 head (``serving_model``).
        """
        inputs = self.normalize(batch).to(self.dtype, memory_format=self.memory_format)
        logits = self.model.forward_head(self.model.forward_features(inputs).float())
        if self.temperature != 1.0:
            logits = logits / self.temperature
        return torch.softmax(logits, dim=1)

    def predict(self, images: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Class probabilities (float32, on CPU) for each uint8 (3, H, W) tensor, in order.

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
        if not self.on_cuda:
            with torch.inference_mode():
                return list(self._compute(torch.stack(list(images))).unbind(0))
        with self._launch, torch.inference_mode():
            staged = self._stage(images)
            if self._captured is not None:
                probabilities = self._captured(staged)
            else:
                probabilities = self._compute(staged.to(self.device, non_blocking=True))
            host = torch.empty(probabilities.shape, dtype=torch.float32, pin_memory=True)
            host.copy_(probabilities, non_blocking=True)
            # A blocking event: its waiter sleeps instead of spinning a core, the cores that
            # HTTP and decoding need; recorded on this device's stream, not device 0's.
            done = torch.cuda.Event(blocking=True)
            done.record(torch.cuda.current_stream(self.device))
        done.synchronize()  # outside the lock: the next batch is enqueued while this one runs
        return list(host.unbind(0))

    def _stage(self, images: Sequence[torch.Tensor]) -> torch.Tensor:
        """One uint8 batch: in pinned host memory, or on the device if any image was decoded there."""
        if any(image.device.type == "cuda" for image in images):
            return torch.stack([image.to(self.device, non_blocking=True) for image in images])
        # Pinned staging makes the host-to-device copy asynchronous; the caching host allocator
        # reuses the block only once that copy has completed.
        staged = torch.empty((len(images), *self.image_shape), dtype=torch.uint8, pin_memory=True)
        return torch.stack(list(images), out=staged)

    def predict_blocking(self, images: list[torch.Tensor]) -> list[torch.Tensor]:
        """``predict`` on an inference thread, for callers without an event loop (benchmarks)."""
        return self._executor.submit(self.predict, images).result()

    async def run_batch(self, images: list[torch.Tensor]) -> list[torch.Tensor]:
        """The batcher's handler: ``predict`` on an inference thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.predict, images)

    async def warm_up(self) -> float:
        """Run every batch size once (and capture CUDA graphs) before the first request, so no
        request pays allocation, autotuning or capture costs; returns the seconds it took."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._warm_up)

    def _warm_up(self) -> float:
        started = time.perf_counter()
        max_batch_size = self.max_batch_size
        if self.on_cuda and self.options.cuda_graphs:
            with self._launch:
                self._captured = CapturedForward(
                    self._compute, batch_buckets(max_batch_size), self.image_shape, self.device
                )
            sizes = self._captured.buckets
        else:
            sizes = list(range(1, max_batch_size + 1))
        sample = torch.randint(0, 256, self.image_shape, dtype=torch.uint8)
        for size in sizes:
            if self._closing.is_set():
                break
            self.predict([sample] * size)
        return time.perf_counter() - started

    def top_k(self, probabilities: torch.Tensor, k: int) -> list[ScoredClass]:
        """The ``k`` most probable classes, highest first."""
        scores, indices = torch.topk(probabilities, min(k, probabilities.numel()))
        return [
            ScoredClass(self.labels[i], i, s)
            for s, i in zip(scores.tolist(), indices.tolist(), strict=True)
        ]

    def close(self) -> None:
        """Stop after the batches in progress; blocks until the inference threads have finished."""
        self._closing.set()
        self._executor.shutdown(wait=True)
