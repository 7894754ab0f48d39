"""The one object every inference route calls, whatever its protocol: ``InferenceService``.

It owns what /predict, the Open Inference Protocol and /explain share: readiness, the model's
description, top-k, admission, the request deadline, decoding, batching and the inference metrics.
A route parses its request, opens an ``InferenceCall`` with ``begin``, hands it images (encoded, or
pixels already at the model's input size) and formats the ``ImageResult`` list it gets back. What
fails is raised as the pipeline's own exceptions, mapped to HTTP once, in ``app.api.errors``.

No FastAPI here: the HTTP side (body reading, disconnect watching, error shapes) stays in ``app/api``.
"""

from __future__ import annotations

import asyncio
import functools
import time
from dataclasses import dataclass

import torch

from app.admission import Ticket
from app.batcher import DeadlineExceededError
from app.metrics import ServiceMetrics
from app.model.bundle import BundleManifest
from app.pipeline import InferencePipeline
from app.runner import ScoredClass
from app.settings import Settings
from app.state import ServiceState

DEFAULT_TOP_K = 5


class NotReadyError(Exception):
    """The model is not loaded and warm, or the server is draining; the message says which."""


class InvalidInputError(ValueError):
    """A request's tensors do not fit the model (a 400, not a server fault)."""


class InvalidParameterError(InvalidInputError):
    """A request parameter is out of range for this model (422, like FastAPI's own checks)."""


@dataclass(frozen=True)
class ImageResult:
    """One image's answer: its probabilities, top-k classes and the timings of its batch.

    ``abstained`` is true when the top score is below the abstain threshold (the model's answer is
    too unsure to act on, likely an image of none of its classes), or when the top class is one of
    ``abstain_labels`` (a trained "none of these" class).
    """

    probabilities: torch.Tensor
    top: list[ScoredClass]
    batch_size: int
    queue_s: float
    compute_s: float
    abstained: bool = False


@dataclass
class InferenceService:
    """Everything inference needs, created by ``create_app``; ``pipeline`` is set once loaded."""

    settings: Settings
    state: ServiceState
    metrics: ServiceMetrics
    pipeline: InferencePipeline | None = None

    def ready_pipeline(self) -> InferencePipeline:
        """The pipeline, or ``NotReadyError`` while starting, draining or failed."""
        if not self.state.ready or self.pipeline is None:
            raise NotReadyError(self.state.reason)
        return self.pipeline

    @property
    def manifest(self) -> BundleManifest:
        """What the served model is (``NotReadyError`` until it is loaded)."""
        if self.pipeline is None:
            raise NotReadyError(self.state.reason)
        return self.pipeline.runner.bundle.manifest

    @property
    def abstain_threshold(self) -> float:
        """The top score below which an answer abstains: the setting, else the bundle's, else 0."""
        if self.settings.abstain_threshold is not None:
            return self.settings.abstain_threshold
        return self.manifest.abstain_threshold

    @functools.cached_property
    def abstain_indices(self) -> frozenset[int]:
        """Class indices answered abstained whatever their score (``abstain_labels``); computed once,
        on the first classification (the model is loaded by then and never changes)."""
        names = self.settings.abstain_label_names
        return frozenset(i for i, label in enumerate(self.manifest.labels) if label in names)

    def top_k(self, requested: int | None) -> int:
        """``requested`` checked against the number of classes; the default is 5, or fewer."""
        num_classes = self.manifest.num_classes
        if requested is None:
            return min(DEFAULT_TOP_K, num_classes)
        if not 1 <= requested <= num_classes:
            raise InvalidParameterError(f"top_k must be 1..{num_classes}, got {requested}")
        return requested

    def start_draining(self) -> None:
        """Stop admitting: readiness and new inference answer 503; admitted work goes on."""
        self.state.mark_draining()

    async def end_drain(self) -> None:
        """Answer whatever is still queued or running with 503 now (drain timeout, second signal)."""
        if self.pipeline is not None:
            await self.pipeline.batcher.stop(drain_timeout_s=0)

    async def stop(self) -> None:
        """The way out: draining, queued work finished within the drain timeout, threads released."""
        self.start_draining()
        if self.pipeline is not None:
            await self.pipeline.stop()

    def begin(self) -> InferenceCall:
        """Admit one request before its body is read: ``NotReadyError`` or ``OverloadedError``."""
        pipeline = self.ready_pipeline()
        return InferenceCall(self, pipeline, pipeline.admit())


class InferenceCall:
    """One admitted request: its admission ticket and its deadline, counted from ``begin``.

    Use as ``with service.begin() as call:``; leaving returns everything it holds.
    """

    def __init__(self, service: InferenceService, pipeline: InferencePipeline, ticket: Ticket):
        self.service = service
        self.pipeline = pipeline
        self.ticket = ticket
        self.started = time.perf_counter()
        self.deadline = asyncio.get_running_loop().time() + service.settings.request_timeout_s
        self.decoded_at: float | None = None

    def __enter__(self) -> InferenceCall:
        return self

    def __exit__(self, *_: object) -> None:
        self.ticket.close()

    @property
    def remaining_s(self) -> float:
        return self.deadline - asyncio.get_running_loop().time()

    def timeout(self) -> asyncio.Timeout:
        """An ``asyncio.timeout`` at this call's deadline, for the stages the route awaits."""
        return asyncio.timeout_at(self.deadline)

    async def classify_encoded(
        self, uploads: list[bytes], top_k: int | None = None
    ) -> list[ImageResult]:
        """Decode untrusted image bytes (within the budgets) and classify them, in order."""
        images = await self.pipeline.prepare_all(uploads, self.ticket)
        return await self.classify(images, top_k)

    async def decode(self, upload: bytes) -> torch.Tensor:
        """Decode one untrusted image to uint8 model input (3, S, S), as ``classify_encoded`` does,
        for a route that runs its own computation on it (/explain)."""
        (image,) = await self.pipeline.prepare_all([upload], self.ticket)
        self.decoded_at = time.perf_counter()
        return image

    async def classify_pixels(
        self, pixels: torch.Tensor, top_k: int | None = None
    ) -> list[ImageResult]:
        """Classify uint8 pixels (N, 3, S, S) already at the model's input size."""
        expected = self.pipeline.runner.image_shape
        if pixels.dim() != 4 or tuple(pixels.shape[1:]) != expected:
            raise InvalidInputError(
                f"pixels must have shape [N,{','.join(map(str, expected))}], "
                f"got {list(pixels.shape)}"
            )
        self.ticket.hold_images(len(pixels))
        return await self.classify(list(pixels.unbind(0)), top_k)

    async def classify(
        self, images: list[torch.Tensor], top_k: int | None = None
    ) -> list[ImageResult]:
        """Classify decoded images, in order; ``top_k`` None leaves ``ImageResult.top`` empty for a
        caller that ranks the probabilities itself (the v2 route's classification extension)."""
        self.decoded_at = time.perf_counter()
        if self.remaining_s <= 0:
            raise DeadlineExceededError("deadline passed while the images were decoded")
        outputs = await self.pipeline.classify(images, self.remaining_s)
        metrics, runner = self.service.metrics, self.pipeline.runner
        threshold, rejected = self.service.abstain_threshold, self.service.abstain_indices
        results = []
        for output in outputs:
            metrics.queue_wait.observe(output.queue_wait_s)
            metrics.inference.observe(output.compute_s)
            metrics.batch_size.observe(output.batch_size)
            top = runner.top_k(output.value, top_k) if top_k else []
            results.append(
                ImageResult(
                    output.value,
                    top,
                    output.batch_size,
                    output.queue_wait_s,
                    output.compute_s,
                    abstained=_abstains(output.value, threshold, rejected),
                )
            )
        metrics.images.inc(len(results))
        return results


def _abstains(probabilities: torch.Tensor, threshold: float, rejected: frozenset[int]) -> bool:
    """Too unsure (top score below the threshold), or the top class is one that means "none"."""
    score, index = probabilities.max(dim=0)
    return float(score) < threshold or int(index) in rejected
