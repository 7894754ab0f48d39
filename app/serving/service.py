"""The one object every inference route calls, whatever its protocol: ``InferenceService``.

It owns what /predict, the Open Inference Protocol, /explain and the health routes share: health
and readiness, the models served (``app.serving.served_model``), admission, the request deadline,
decoding, batching and the inference metrics. A route parses its request, opens an ``InferenceCall`` with
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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import torch

from app.serving.admission import AdmissionGate, Ticket, body_reservation
from app.serving.batcher import DeadlineExceededError
from app.serving.errors import DrainingError, InvalidInputError, ModelNotFoundError, NotReadyError
from app.serving.explainer import Explainer
from app.serving.health import health_report
from app.serving.metrics import ServiceMetrics
from app.serving.pipeline import DecodeWorkers, InferencePipeline
from app.serving.runner import ScoredClass, abstains
from app.serving.served_model import ServedModel, ServedVersion, first_serving
from app.serving.state import Phase, ServiceState
from app.serving.statistics import RequestTimes
from app.settings import Settings
from app.wire.rest import HealthResponse, ImagePrediction, ScoredLabel

if TYPE_CHECKING:  # the builder makes the service, with its loader
    from app.serving.builder import VersionLoader

T = TypeVar("T")


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
class InferenceService:
    """Everything inference needs, with its models loaded: made by ``app.serving.builder``.

    ``models`` holds every model served, by name; a request names one (or, on a server of one
    model, may name none) and the version it runs on (or the latest).
    """

    settings: Settings
    state: ServiceState
    metrics: ServiceMetrics
    loader: VersionLoader  # how versions are loaded, into what they all share
    models: dict[str, ServedModel]

    @property
    def gate(self) -> AdmissionGate:
        """The one admission bound of the process, whatever the model."""
        return self.loader.gate

    @property
    def workers(self) -> DecodeWorkers:
        """The decode, parse and trim threads every model shares."""
        return self.loader.workers

    @property
    def pipelines(self) -> list[InferencePipeline]:
        """Every version's pipeline that serves now, of every model."""
        return [pipeline for model in self.models.values() for pipeline in model.pipelines]

    def model(self, name: str | None) -> ServedModel:
        """The model ``name``; none ("" or None) names the only one: ``ModelNotFoundError``
        otherwise."""
        if not name and len(self.models) == 1:
            return next(iter(self.models.values()))
        found = self.models.get(name) if name else None
        if found is None:
            serving = [name for name, model in self.models.items() if model.versions]
            served = ", ".join(sorted(serving or self.models))
            if not name:
                raise ModelNotFoundError(f"name a model: this server serves {served}")
            raise ModelNotFoundError(f"unknown model {name}; this server serves {served}")
        return found

    @property
    def first_model(self) -> ServedModel:
        return first_serving(self.models)

    def served(self, name: str | None, version: str | None = None) -> ServedVersion:
        """The version a request for ``name`` (and ``version``, else the latest) runs on:
        ``ModelNotFoundError``, or ``NotReadyError`` while the model is unloaded."""
        return self.model(name).version(version)

    def model_ready(self, name: str, version: str | None = None) -> bool:
        """Whether the server takes requests for ``name`` (at ``version``): ``ModelNotFoundError``
        for a model, or a version of a served one, that it does not know."""
        model = self.model(name)
        if model.versions:
            model.version(version)
        return self.health().ready and bool(model.versions)

    @property
    def weight_bytes(self) -> int:
        """What every model's versions hold (``MODEL_MEMORY_MB`` counts it)."""
        return sum(model.weight_bytes for model in self.models.values())

    def describe(self) -> None:
        """Publish the model versions served now in the metrics (at start and at each change)."""
        self.metrics.describe_models(
            (name, version.version, version.pipeline.runner)
            for name, model in self.models.items()
            for version in model.versions.values()
        )

    def check_ready(self) -> None:
        """``NotReadyError`` (``DrainingError``) while warming up, draining or failed."""
        if self.state.phase is Phase.DRAINING:
            raise DrainingError(self.state.reason)
        if not self.state.ready:
            raise NotReadyError(self.state.reason)

    def health(self) -> HealthResponse:
        """What every protocol's health routes answer from (``app.serving.health``)."""
        return health_report(self.settings, self.state, self.gate, self.models)

    async def start(self) -> float:
        """Warm every model up, then take requests; returns the warm-up seconds. A failure marks
        the service failed (liveness turns 503) and is raised."""
        self.workers.start()
        try:
            seconds = sum([await pipeline.start() for pipeline in self.pipelines])
        except Exception as exc:
            # Health routes answer without a key: the cause (paths, driver text) stays in the log.
            self.state.mark_failed(f"warm-up failed ({type(exc).__name__}); the server log has why")
            raise
        self.metrics.set_warmup_seconds(seconds)
        self.state.mark_ready()
        return seconds

    async def end_drain(self) -> None:
        """Answer whatever is still queued or running with 503 now (drain timeout, second signal)."""
        await asyncio.gather(*(p.batcher.stop(drain_timeout_s=0) for p in self.pipelines))

    async def stop(self) -> None:
        """The way out: draining, queued work finished within what is left of the drain, threads
        released."""
        self.state.mark_draining()
        left_s = self.state.drain_left_s
        await asyncio.gather(*(model.stop(left_s) for model in self.models.values()))
        self.workers.close()

    async def explainer(self, name: str | None) -> Explainer:
        """The Grad-CAM explainer of model ``name``, made on first use (``ServedModel``)."""
        self.check_ready()
        return await self.model(name).explainer()

    def begin(
        self,
        declared_length: str | None,
        client_timeout_s: float | None = None,
        model: str | None = None,
        version: str | None = None,
    ) -> InferenceCall:
        """Admit one request for ``model`` (at ``version``) before its body is read, by its
        ``Content-Length`` header (None when it declares none): ``NotReadyError``,
        ``ModelNotFoundError`` or ``OverloadedError``. Its deadline is ``request_timeout_s`` away,
        or the client's own (a gRPC deadline) when that is sooner."""
        self.check_ready()
        served_model = self.model(model)
        served = served_model.version(version)
        body_bytes = body_reservation(declared_length, self.settings.max_body_bytes)
        timeout_s = self.settings.request_timeout_s
        if client_timeout_s is not None:
            timeout_s = min(timeout_s, client_timeout_s)
        ticket = self.gate.admit(body_bytes)
        return InferenceCall(self, served_model.name, served, ticket, timeout_s)


class InferenceCall:
    """One admitted request: its admission ticket and its deadline, counted from ``begin``.

    Use as ``with service.begin(content_length) as call:``; leaving returns everything it holds.
    """

    def __init__(
        self,
        service: InferenceService,
        model: str,
        version: ServedVersion,
        ticket: Ticket,
        timeout_s: float,
    ) -> None:
        self.service = service
        self.model = model  # the name it is served under
        self.version = version  # the one it was admitted on, to its end
        self.pipeline = version.pipeline
        version.requests += 1
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
        self.version.requests -= 1
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
        runner = self.pipeline.runner
        metrics = self.service.metrics.of_model(self.model, self.version.version)
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
