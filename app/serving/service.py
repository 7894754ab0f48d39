"""The one object every inference route calls, whatever its protocol: ``InferenceService``.

It owns what /predict, the Open Inference Protocol, /explain and the health routes share: health
and readiness, the model's description, top-k, admission, the request deadline, decoding, batching,
the explainer and the inference metrics. A route parses its request, opens an ``InferenceCall`` with
``begin``, hands it images (encoded, or pixels already at the model's input size) and formats the
``Classification`` list it gets back. What fails is raised as the pipeline's own exceptions (and those
of ``app.serving.errors``), mapped to HTTP once, in ``app.edge.routes.inference``.

No FastAPI here: the HTTP side (body reading, disconnect watching, error shapes) stays in
``app.edge``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch

from app.model.bundle import BundleManifest
from app.serving.admission import Ticket, body_reservation
from app.serving.batcher import DeadlineExceededError
from app.serving.errors import (
    DrainingError,
    InvalidInputError,
    InvalidParameterError,
    ModelNotFoundError,
    NotReadyError,
)
from app.serving.explainer import Explainer
from app.serving.health import health_report
from app.serving.metrics import ServiceMetrics
from app.serving.pipeline import InferencePipeline
from app.serving.runner import ScoredClass, abstains
from app.serving.state import Phase, ServiceState
from app.serving.statistics import RequestTimes
from app.settings import Settings
from app.wire.rest import HealthResponse, ImagePrediction, ScoredLabel

T = TypeVar("T")

DEFAULT_TOP_K = 5
RETIRE_POLL_S = 0.05  # how often a replaced version looks whether its requests have ended


@dataclass(frozen=True)
class Classification:
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

    def as_prediction(self) -> ImagePrediction:
        """This answer as every transport and the offline command give it (``app.wire``)."""
        return ImagePrediction(
            predictions=[ScoredLabel(c.label, c.index, c.score) for c in self.top],
            batch_size=self.batch_size,
            queue_ms=round(self.queue_s * 1000, 3),
            inference_ms=round(self.compute_s * 1000, 3),
            abstained=self.abstained,
        )


@dataclass
class ServedVersion:
    """One loaded, warm version of the model: its pipeline and what is read from its bundle.

    A request keeps the version it was admitted on to its end, so a newer version can be swapped
    in (``InferenceService.swap_in``) while older requests finish on the one they began on.
    """

    version: str
    pipeline: InferencePipeline
    settings: Settings

    def __post_init__(self) -> None:
        manifest = self.pipeline.runner.bundle.manifest
        self.manifest: BundleManifest = manifest
        self.image_shape: tuple[int, int, int] = self.pipeline.runner.image_shape
        # The top score below which an answer abstains: the setting, else the bundle's.
        self.abstain_threshold: float = (
            self.settings.abstain_threshold
            if self.settings.abstain_threshold is not None
            else manifest.abstain_threshold
        )
        # Labels answered abstained whatever their score: the setting, else the bundle's.
        names = self.settings.abstain_label_names
        if names is None:
            names = frozenset(manifest.abstain_labels)
        self.abstain_labels: tuple[str, ...] = tuple(sorted(names))
        self.abstain_indices = frozenset(i for i, x in enumerate(manifest.labels) if x in names)

    async def retire(self, timeout_s: float) -> None:
        """Once the requests admitted on this version have ended (at most ``timeout_s``), stop it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self.pipeline.gate.requests and loop.time() < deadline:
            await asyncio.sleep(RETIRE_POLL_S)
        await self.pipeline.stop(max(0.0, deadline - loop.time()))


@dataclass
class InferenceService:
    """Everything inference needs, with its model loaded: made by ``app.serving.builder``."""

    settings: Settings
    state: ServiceState
    metrics: ServiceMetrics
    current: ServedVersion
    _explainer: asyncio.Future[Explainer] | None = field(default=None, repr=False)
    _retiring: set[asyncio.Task[None]] = field(default_factory=set, repr=False)

    # What the version now served says; a request reads its own version's (``InferenceCall``).
    @property
    def pipeline(self) -> InferencePipeline:
        return self.current.pipeline

    @property
    def manifest(self) -> BundleManifest:
        return self.current.manifest

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.current.image_shape

    @property
    def version(self) -> str:
        return self.current.version

    async def swap_in(self, newer: ServedVersion) -> None:
        """Serve ``newer`` (loaded and warm) from now on; the version it replaces finishes the
        requests admitted on it, then stops, in the background. The explainer, made from the old
        model, is dropped."""
        older, self.current = self.current, newer
        retiring = asyncio.create_task(older.retire(self.settings.drain_timeout_s))
        self._retiring.add(retiring)
        retiring.add_done_callback(self._retiring.discard)
        await self._close_explainer()

    def check_model(self, name: str, version: str | None = None) -> None:
        """``ModelNotFoundError`` unless ``name`` (and ``version``, when given) is the model served.
        An empty version is none, as gRPC's unset string field is."""
        served = self.manifest.name
        if name != served or version not in (None, "", self.version):
            shown = name if not version else f"{name} version {version}"
            raise ModelNotFoundError(f"unknown model {shown}; this server serves {served}")

    def check_ready(self) -> None:
        """``NotReadyError`` (``DrainingError``) while warming up, draining or failed."""
        if self.state.phase is Phase.DRAINING:
            raise DrainingError(self.state.reason)
        if not self.state.ready:
            raise NotReadyError(self.state.reason)

    def health(self) -> HealthResponse:
        """What every protocol's health routes answer from (``app.serving.health``)."""
        return health_report(self.settings, self.state, self.pipeline)

    def top_k(self, requested: int | None) -> int:
        """``requested`` checked against the number of classes; the default is 5, or fewer."""
        num_classes = self.manifest.num_classes
        if requested is None:
            return min(DEFAULT_TOP_K, num_classes)
        if not 1 <= requested <= num_classes:
            raise InvalidParameterError(f"top_k must be 1..{num_classes}, got {requested}")
        return requested

    async def start(self) -> float:
        """Warm the model up, then take requests; returns the warm-up seconds. A failure marks
        the service failed (liveness turns 503) and is raised."""
        try:
            seconds = await self.pipeline.start()
        except Exception as exc:
            # Health routes answer without a key: the cause (paths, driver text) stays in the log.
            self.state.mark_failed(f"warm-up failed ({type(exc).__name__}); the server log has why")
            raise
        self.metrics.set_warmup_seconds(seconds)
        self.state.mark_ready()
        return seconds

    async def end_drain(self) -> None:
        """Answer whatever is still queued or running with 503 now (drain timeout, second signal)."""
        await self.pipeline.batcher.stop(drain_timeout_s=0)

    async def stop(self) -> None:
        """The way out: draining, queued work finished within what is left of the drain, threads
        released."""
        self.state.mark_draining()
        await self.pipeline.stop(self.state.drain_left_s)
        await asyncio.gather(*self._retiring)  # versions swapped out, still finishing
        await self._close_explainer()

    async def _close_explainer(self) -> None:
        made, self._explainer = self._explainer, None
        if made is None or made.cancelled():
            return
        try:
            explainer = await made  # one still being made is waited for, then closed too
        except Exception:
            return  # its making failed: nothing to close
        await asyncio.to_thread(explainer.close)  # the one computing ends; queued ones drop

    async def explainer(self) -> Explainer:
        """The Grad-CAM explainer, made on first use: its model copy costs memory (and a GPU's, on
        one) that a server nobody asks to explain should not pay. Concurrent first calls share one;
        a failed copy is retried by the next call."""
        self.check_ready()
        runner = self.pipeline.runner
        if self._explainer is None:
            max_pending = self.settings.explain_max_pending
            self._explainer = asyncio.ensure_future(
                asyncio.to_thread(Explainer, runner, max_pending)
            )
        making = self._explainer
        try:
            return await asyncio.shield(making)  # one caller's timeout must not cancel it for all
        except Exception:
            if making.done() and self._explainer is making:
                self._explainer = None
            raise

    def begin(
        self, declared_length: str | None, client_timeout_s: float | None = None
    ) -> InferenceCall:
        """Admit one request before its body is read, by its ``Content-Length`` header (None when
        it declares none): ``NotReadyError`` or ``OverloadedError``. Its deadline is
        ``request_timeout_s`` away, or the client's own (a gRPC deadline) when that is sooner."""
        self.check_ready()
        body_bytes = body_reservation(declared_length, self.settings.max_body_bytes)
        timeout_s = self.settings.request_timeout_s
        if client_timeout_s is not None:
            timeout_s = min(timeout_s, client_timeout_s)
        version = self.current
        return InferenceCall(self, version, version.pipeline.admit(body_bytes), timeout_s)


class InferenceCall:
    """One admitted request: its admission ticket and its deadline, counted from ``begin``.

    Use as ``with service.begin(content_length) as call:``; leaving returns everything it holds.
    """

    def __init__(
        self, service: InferenceService, version: ServedVersion, ticket: Ticket, timeout_s: float
    ):
        self.service = service
        self.version = version  # the one it was admitted on, to its end
        self.pipeline = version.pipeline
        self.ticket = ticket
        self.started = time.perf_counter()
        self.timeout_s = timeout_s
        self.deadline = asyncio.get_running_loop().time() + timeout_s
        self.decoded_at: float | None = None
        self.largest_batch = 0  # of the batches this call's images ran in (0: none ran)
        self.times: RequestTimes | None = None  # set once its images are classified

    def __enter__(self) -> InferenceCall:
        return self

    def __exit__(self, error_type: type[BaseException] | None, *_: object) -> None:
        self.ticket.close()
        statistics = self.pipeline.statistics
        if error_type is not None:
            statistics.record_failure(time.perf_counter() - self.started)
        elif self.times is not None:  # a call that classified (not /explain's own computation)
            statistics.record_success(time.perf_counter() - self.started, self.times)

    @property
    def remaining_s(self) -> float:
        return self.deadline - asyncio.get_running_loop().time()

    def timeout(self) -> asyncio.Timeout:
        """An ``asyncio.timeout`` at this call's deadline, for the stages the route awaits."""
        return asyncio.timeout_at(self.deadline)

    async def classify_encoded(
        self, uploads: list[bytes], top_k: int | None = None
    ) -> list[Classification]:
        """Decode untrusted image bytes (within the budgets) and classify them, in order."""
        images = await self.pipeline.prepare_all(uploads, self.ticket)
        return await self.classify(images, top_k)

    async def parse(self, function: Callable[..., T], *args: Any) -> T:
        """``function(*args)`` off the event loop, for a body whose parse cost grows with it."""
        return await self.pipeline.parse(function, *args)

    async def decode(self, upload: bytes) -> torch.Tensor:
        """Decode one untrusted image to uint8 model input (3, S, S), as ``classify_encoded`` does,
        for a route that runs its own computation on it (/explain)."""
        (image,) = await self.pipeline.prepare_all([upload], self.ticket)
        self.decoded_at = time.perf_counter()
        return image

    async def classify_pixels(
        self, pixels: torch.Tensor, top_k: int | None = None
    ) -> list[Classification]:
        """Classify uint8 pixels (N, 3, S, S) already at the model's input size."""
        expected = self.version.image_shape
        if pixels.dim() != 4 or tuple(pixels.shape[1:]) != expected:
            raise InvalidInputError(
                f"pixels must have shape [N,{','.join(map(str, expected))}], "
                f"got {list(pixels.shape)}"
            )
        self.ticket.hold_images(len(pixels))
        return await self.classify(list(pixels.unbind(0)), top_k)

    async def classify(
        self, images: list[torch.Tensor], top_k: int | None = None
    ) -> list[Classification]:
        """Classify decoded images, in order; ``top_k`` None leaves ``Classification.top`` empty for a
        caller that ranks the probabilities itself (the v2 route's classification extension)."""
        self.decoded_at = time.perf_counter()
        if self.remaining_s <= 0:
            raise DeadlineExceededError("deadline passed while the images were decoded")
        outputs = await self.pipeline.classify(images, self.remaining_s)
        classified_at = time.perf_counter()
        self.largest_batch = max([self.largest_batch, *(output.batch_size for output in outputs)])
        metrics, runner = self.service.metrics, self.pipeline.runner
        threshold, rejected = self.version.abstain_threshold, self.version.abstain_indices
        results = []
        for output in outputs:
            metrics.queue_wait.observe(output.queue_wait_s)
            metrics.inference.observe(output.compute_s)
            metrics.batch_size.observe(output.batch_size)
            top = runner.top_k(output.value, top_k) if top_k else []
            results.append(
                Classification(
                    output.value,
                    top,
                    output.batch_size,
                    output.queue_wait_s,
                    output.compute_s,
                    abstained=abstains(output.value, threshold, rejected),
                )
            )
        metrics.images.inc(len(results))
        self.times = RequestTimes(
            input_s=self.decoded_at - self.started,
            queue_s=max(output.queue_wait_s for output in outputs),
            infer_s=max(output.compute_s for output in outputs),
            output_s=time.perf_counter() - classified_at,
        )
        return results
