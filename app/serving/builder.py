"""One way to make a served model: settings -> runner -> pipeline -> service.

``resnet-serve serve``, every replica and offline prediction call ``build_service``; nothing is
made twice and nothing is left half there: a service exists only with its model loaded. The device
is resolved once, the abstain labels are checked once, and the runner's batch limit is the only one
(the pipeline's batcher reads it from the runner).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from app.model.bundle import BundleError
from app.model.devices import DeviceError, resolve_device
from app.serving.metrics import ServiceMetrics
from app.serving.pipeline import InferencePipeline
from app.serving.runner import ModelRunner, RunnerOptions, replica_memory_fraction
from app.serving.service import InferenceService, ServedVersion
from app.serving.state import ServiceState
from app.serving.versions import served_version
from app.settings import Settings

logger = logging.getLogger("resnet_serve")

RunnerLoader = Callable[[Settings], ModelRunner]


def load_runner(settings: Settings) -> ModelRunner:
    """Load the configured bundle onto the configured device; raises ``BundleError``/``DeviceError``.

    The step of ``build_service`` that benchmarks replace (``app.edge.server.serve``'s ``load``).
    """
    device = resolve_device(settings.device)
    if settings.gpu_decode and device.type != "cuda":  # refused before the weights are loaded
        raise DeviceError(f"gpu_decode needs a CUDA device; the model would run on {device}")
    options = RunnerOptions(
        max_batch_size=settings.max_batch_size,
        cuda_graphs=settings.cuda_graphs,
        batches_in_flight=settings.batches_in_flight,
        torch_threads=settings.torch_threads,
        device_memory_fraction=replica_memory_fraction(settings.workers),
    )
    return ModelRunner.load(str(settings.model_dir), device, settings.precision, options)


def check_abstain_labels(settings: Settings, labels: list[str]) -> None:
    """A misspelt ``abstain_labels`` entry would silently never match: refuse it instead."""
    unknown = sorted((settings.abstain_label_names or frozenset()) - set(labels))
    if unknown:
        raise BundleError(
            f"{settings.model_dir}: abstain_labels names {', '.join(unknown)}, not among the "
            f"bundle's labels ({', '.join(labels)})"
        )


def build_version(
    settings: Settings, version: str, bundle_dir: Path, load: RunnerLoader = load_runner
) -> ServedVersion:
    """Load version ``version`` of the model from ``bundle_dir``, not yet warm (the runner is
    closed again if a later step refuses it): ``BundleError``/``DeviceError``."""
    at_version = settings.model_copy(update={"model_dir": bundle_dir})
    runner = load(at_version)
    try:
        check_abstain_labels(at_version, runner.labels)
        pipeline = InferencePipeline(runner, at_version)
    except BaseException:
        runner.close()
        raise
    manifest = runner.bundle.manifest
    logger.info(
        "loaded %s version %s (%s, %d classes) from %s on %s (%s)",
        manifest.name,
        version,
        manifest.arch,
        manifest.num_classes,
        bundle_dir,
        runner.device,
        runner.precision,
    )
    return ServedVersion(version, pipeline, settings)


def build_service(settings: Settings, load: RunnerLoader = load_runner) -> InferenceService:
    """The loaded, not yet warm, service for ``settings``: ``BundleError``/``DeviceError`` when
    the model cannot be served here. ``MODEL_DIR`` is a bundle or a folder of numbered versions
    (``app.serving.versions``): the highest is served."""
    version, bundle_dir = served_version(settings.model_dir)
    current = build_version(settings, version, bundle_dir, load)
    runner = current.pipeline.runner
    metrics = ServiceMetrics()
    metrics.describe_model(current.manifest, version, runner.device, runner.precision)
    metrics.set_model_load_seconds(runner.load_seconds)
    if runner.on_cuda:
        metrics.watch_gpu(runner.device)
    service = InferenceService(settings, ServiceState(settings.drain_timeout_s), metrics, current)
    metrics.watch(
        in_flight=lambda: service.state.requests_in_flight,
        queue_depth=lambda: service.pipeline.batcher.queue_depth,
        saturation=lambda: service.pipeline.gate.saturation,
    )
    return service
