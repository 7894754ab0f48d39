"""Prometheus metrics of one app instance, on its own registry (no process-global state)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class ServiceMetrics:
    """Counters and histograms fed by the request observer and the predict route."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "resnet_serve_requests",
            "HTTP requests answered, by route and status code.",
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
            "Requests being handled now, health probes and scrapes excluded (the HPA signal).",
            registry=self.registry,
        )
        self.images = Counter("resnet_serve_images", "Images classified.", registry=self.registry)
        self.queue_wait = Histogram(
            "resnet_serve_queue_wait_seconds",
            "Time an image waited in the batcher queue.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.inference = Histogram(
            "resnet_serve_inference_seconds",
            "Forward-pass time of the batch an image ran in.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "resnet_serve_batch_size",
            "Batch size each image ran in.",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "resnet_serve_queue_depth", "Images waiting for a batch.", registry=self.registry
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
