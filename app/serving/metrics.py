"""Prometheus metrics of one app instance, on its own registry (no process-global state)."""

from __future__ import annotations

import logging
import platform
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

import torch
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

if TYPE_CHECKING:
    from app.serving.runner import ModelRunner

logger = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)

# Error codes (``ApiError.code``) grouped into the few reasons a dashboard can show side by side.
# Every code the app answers is here (tests/unit/test_metrics.py checks); one missing would count as
# ``bad_request``.
REJECTION_REASONS = {
    "overloaded": "overloaded",
    "queue_full": "overloaded",
    "explain_busy": "overloaded",
    "deadline_exceeded": "deadline",
    "upload_timeout": "deadline",
    "header_timeout": "deadline",
    "write_timeout": "slow_reader",  # not an answer: the connection of a client that stopped reading
    "payload_too_large": "too_large",
    "image_too_large": "too_large",
    "too_many_images": "too_large",
    "decode_budget_exceeded": "too_large",
    "headers_too_large": "too_large",
    "too_many_headers": "too_large",
    "invalid_image": "bad_image",
    "empty_body": "bad_request",
    "no_file": "bad_request",
    "malformed_multipart": "bad_request",
    "unsupported_media_type": "bad_request",
    "unsupported_content_encoding": "bad_request",
    "invalid_compressed_body": "bad_request",
    "invalid_parameter": "bad_request",
    "invalid_input": "bad_request",
    "bad_request": "bad_request",
    "model_not_found": "bad_request",
    "client_closed_request": "bad_request",
    "unauthorized": "unauthorized",
    "shutting_down": "draining",
    "not_ready": "not_ready",
    "inference_failed": "internal",
    "internal_error": "internal",
}
DEFAULT_REJECTION_REASON = "bad_request"
MODEL_LABELS = ["model", "version"]
REJECTION_LABELS = sorted(set(REJECTION_REASONS.values()))


def _package_version() -> str:
    try:
        return version("resnet-serve")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


@dataclass(frozen=True)
class ModelMetrics:
    """One model version's series of the inference metrics."""

    images: Counter
    queue_wait: Histogram
    inference: Histogram
    batch_size: Histogram


class ServiceMetrics:
    """Metrics fed by the request observer, the predict route, the error handlers and the lifespan."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._of_model: dict[tuple[str, str], ModelMetrics] = {}  # looked up once per version
        self.requests = Counter(
            "resnet_serve_requests",
            "Requests answered, by route and status (HTTP: route and code; gRPC: method and code name).",
            ["route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "resnet_serve_request_duration_seconds",
            "Time from request start to response start, by route.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "resnet_serve_requests_in_flight",
            "Inference requests (/predict, /explain, v2 infer) being handled now (the HPA signal).",
            registry=self.registry,
        )
        self.images = Counter(
            "resnet_serve_images",
            "Images classified, by model and version.",
            MODEL_LABELS,
            registry=self.registry,
        )
        self.queue_wait = Histogram(
            "resnet_serve_queue_wait_seconds",
            "Time an image waited in the batcher queue, by model and version.",
            MODEL_LABELS,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.inference = Histogram(
            "resnet_serve_inference_seconds",
            "Forward-pass time of the batch an image ran in, by model and version.",
            MODEL_LABELS,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "resnet_serve_batch_size",
            "Batch size each image ran in, by model and version.",
            MODEL_LABELS,
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "resnet_serve_queue_depth",
            "Images waiting for a batch, of every model.",
            registry=self.registry,
        )

        self.saturation = Gauge(
            "resnet_serve_admission_saturation_ratio",
            "Fill of the fullest admission bound (requests, images, decode pixels), 0..1.",
            registry=self.registry,
        )
        self.refused = Counter(
            "resnet_serve_admission_refused",
            "Requests refused at the door with 503 because a bound was reached.",
            registry=self.registry,
        )
        self.rejected = Counter(
            "resnet_serve_rejected_requests",
            "Requests answered with an error, by reason (overloaded, deadline, too_large, ...); "
            "slow_reader: a response abandoned because its client stopped reading.",
            ["reason"],
            registry=self.registry,
        )
        for reason in REJECTION_LABELS:  # at 0 from the start: a first rejection shows in rate()
            self.rejected.labels(reason)

        self.model_load = Gauge(
            "resnet_serve_model_load_seconds",
            "Time to load the bundle onto the device.",
            registry=self.registry,
        )
        self.warm_up = Gauge(
            "resnet_serve_warmup_seconds",
            "Time to warm the model up at every batch size.",
            registry=self.registry,
        )
        self.build = Info(
            "resnet_serve_build", "Versions this process runs.", registry=self.registry
        )
        self.build.info(
            {
                "version": _package_version(),
                "torch": torch.__version__,
                "python": platform.python_version(),
            }
        )
        # Info's exposition (name_info{...} 1), with a series per model and version served.
        self.model = Gauge(
            "resnet_serve_model_info",
            "A model version being served (1), described by its labels.",
            ["model", "version", "arch", "num_classes", "device", "precision"],
            registry=self.registry,
        )
        self.version_swaps = Counter(
            "resnet_serve_model_version_swaps",
            "Changes to the versions a model serves while serving (a version swapped in, a model "
            "loaded or added), by model.",
            ["model"],
            registry=self.registry,
        )
        self.version_refusals = Counter(
            "resnet_serve_model_version_refusals",
            "Model versions refused (bundle invalid, labels changed, does not fit, warm-up "
            "failed), by model; what is already served goes on.",
            ["model"],
            registry=self.registry,
        )

    def count_rejection(self, code: str) -> None:
        """Count one error answer under the reason its ``code`` belongs to; an admission refusal
        (code ``overloaded``, from the HTTP layer or the route) also counts as refused."""
        self.rejected.labels(REJECTION_REASONS.get(code, DEFAULT_REJECTION_REASON)).inc()
        if code == "overloaded":
            self.refused.inc()

    def set_model_load_seconds(self, seconds: float) -> None:
        self.model_load.set(seconds)

    def set_warmup_seconds(self, seconds: float) -> None:
        self.warm_up.set(seconds)

    def of_model(self, model: str, version: str) -> ModelMetrics:
        """The series of one model version, for the answers it gives (on every request: the
        label lookups are made once)."""
        labels = (model, version)
        series = self._of_model.get(labels)
        if series is None:
            series = self._of_model[labels] = ModelMetrics(
                images=self.images.labels(*labels),
                queue_wait=self.queue_wait.labels(*labels),
                inference=self.inference.labels(*labels),
                batch_size=self.batch_size.labels(*labels),
            )
        return series

    def describe_models(self, served: Iterable[tuple[str, str, ModelRunner]]) -> None:
        """Publish what is served, ``(model, version, runner)``, as ``resnet_serve_model_info``:
        once loaded, and at each change (a version swapped in or out, a model loaded or not)."""
        self.model.clear()
        for name, number, runner in served:
            manifest = runner.bundle.manifest
            self.model.labels(
                model=name,
                version=number,
                arch=manifest.arch,
                num_classes=str(manifest.num_classes),
                device=str(runner.device),
                precision=runner.precision,
            ).set(1)

    def watch_gpu(self, device: torch.device) -> None:
        """Export the CUDA memory of ``device`` (and its utilisation, where NVML is there).

        Call once, for a CUDA device only: a CPU server has no GPU series at all, rather than
        zeros that would read as an idle GPU. Values are read at scrape time.
        """
        Gauge(
            "resnet_serve_gpu_memory_allocated_bytes",
            "CUDA memory held by tensors on the model's device.",
            registry=self.registry,
        ).set_function(lambda: torch.cuda.memory_allocated(device))
        Gauge(
            "resnet_serve_gpu_memory_reserved_bytes",
            "CUDA memory reserved by torch's caching allocator on the model's device.",
            registry=self.registry,
        ).set_function(lambda: torch.cuda.memory_reserved(device))
        try:
            # NVML comes from nvidia-ml-py (pynvml), locked for Linux; without it, or without an
            # NVML driver library, this raises and the utilisation gauge is not exported.
            torch.cuda.utilization(device)
        except Exception as exc:
            logger.info("GPU utilisation not exported: %s", exc)
            return
        Gauge(
            "resnet_serve_gpu_utilization_ratio",
            "Share of the last sample period in which a kernel ran on the model's GPU, 0..1.",
            registry=self.registry,
        ).set_function(lambda: torch.cuda.utilization(device) / 100)

    def watch(
        self,
        in_flight: Callable[[], int],
        queue_depth: Callable[[], int],
        saturation: Callable[[], float],
    ) -> None:
        """Read the gauges at scrape time rather than updating them on every change."""
        self.in_flight.set_function(in_flight)
        self.queue_depth.set_function(queue_depth)
        self.saturation.set_function(saturation)
