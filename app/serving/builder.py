"""One way to make served models: settings -> runner -> pipeline -> model -> service.

``resnet-serve serve``, every replica and offline prediction call ``build_service``, and the model
repository (``app.serving.repository``) the service's ``VersionLoader``; nothing is made twice
and nothing is left half there: a service exists only with its models loaded. The abstain labels
and the memory limit are checked once per version, and the runner's batch limit is the only one
(the pipeline's batcher reads it from the runner).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

from app.model.bundle import BundleError
from app.model.devices import DeviceError, resolve_device
from app.serving.admission import AdmissionGate, AdmissionLimits
from app.serving.metrics import ServiceMetrics
from app.serving.model_config import CONFIG_FILE, ModelConfig, read_model_config
from app.serving.pipeline import DecodeWorkers, InferencePipeline, decode_threads
from app.serving.runner import (
    ModelRunner,
    RunnerOptions,
    batches_in_flight,
    replica_memory_fraction,
)
from app.serving.served_model import ServedModel, ServedVersion
from app.serving.service import InferenceService
from app.serving.state import ServiceState
from app.serving.versions import (
    KSERVE_MODEL_MOUNT,
    is_model_folder,
    is_versioned,
    repository_models,
    served_versions,
)
from app.settings import Settings

logger = logging.getLogger("resnet_serve")

RunnerLoader = Callable[[Settings], ModelRunner]
MB = 1024 * 1024  # MODEL_MEMORY_MB counts in 2**20 bytes


class ModelMemoryError(BundleError):
    """A model version does not fit: in the device's memory, or beside the models served within
    ``MODEL_MEMORY_MB``."""


def load_runner(settings: Settings) -> ModelRunner:
    """Load the configured bundle onto the configured device; raises ``BundleError``/``DeviceError``.

    The step of ``build_service`` that benchmarks replace (``app.edge.server.serve``'s ``load``).
    """
    device = resolve_device(settings.device)
    if settings.gpu_decode and device.type != "cuda":  # refused before the weights are loaded
        raise DeviceError(f"gpu_decode needs a CUDA device; the model would run on {device}")
    options = runner_options(settings)
    return ModelRunner.load(str(settings.model_dir), device, settings.precision, options)


def runner_options(settings: Settings) -> RunnerOptions:
    """How the runners of ``settings`` run their batches."""
    return RunnerOptions(
        max_batch_size=settings.max_batch_size,
        cuda_graphs=settings.cuda_graphs,
        batches_in_flight=settings.batches_in_flight,
        torch_threads=settings.torch_threads,
        device_memory_fraction=replica_memory_fraction(settings.workers),
    )


def check_abstain_labels(settings: Settings, labels: list[str]) -> None:
    """A misspelt ``abstain_labels`` entry would silently never match: refuse it instead."""
    unknown = sorted((settings.abstain_label_names or frozenset()) - set(labels))
    if unknown:
        raise BundleError(
            f"{settings.model_dir}: abstain_labels names {', '.join(unknown)}, not among the "
            f"bundle's labels ({', '.join(labels)})"
        )


def admission_gate(settings: Settings) -> AdmissionGate:
    """The server's one admission gate, shared by every model it serves."""
    device = resolve_device(settings.device)
    return AdmissionGate(
        AdmissionLimits(
            max_requests=settings.max_requests_in_flight,
            max_images=settings.max_queue_size,
            max_decode_pixels=settings.max_decode_pixels,
            max_body_bytes=settings.max_body_bytes_in_flight,
        ),
        batches_in_flight(device, runner_options(settings)),
    )


def decode_workers(settings: Settings) -> DecodeWorkers:
    """The server's decode, parse and trim threads, shared by every model it serves."""
    on_cuda = resolve_device(settings.device).type == "cuda"
    return DecodeWorkers(decode_threads(settings.decode_workers, on_cuda))


def check_memory(settings: Settings, runner: ModelRunner, held_bytes: int) -> None:
    """``ModelMemoryError`` when ``runner``'s weights and the ``held_bytes`` of the versions
    already served together pass ``MODEL_MEMORY_MB``."""
    limit = settings.model_memory_mb * MB
    needed = runner.weight_bytes
    if limit and held_bytes + needed > limit:
        raise ModelMemoryError(
            f"{settings.model_dir}: its weights need {needed / MB:.1f} MB on {runner.device} and "
            f"the models served hold {held_bytes / MB:.1f} MB of the "
            f"{settings.model_memory_mb} MB limit (MODEL_MEMORY_MB)"
        )


def _kserve_mount(settings: Settings) -> Path | None:
    """KServe's storage mount in a pod that KServe gives models from storage (``STORAGE_URI``),
    unless ``MODEL_REPOSITORY`` names the models: found by itself, in place of ``MODEL_DIR``."""
    if settings.model_repository is not None or not settings.storage_uri:
        return None
    return KSERVE_MODEL_MOUNT


def repository_root(settings: Settings) -> Path | None:
    """The folder of model folders served (``MODEL_REPOSITORY``, or KServe's mount holding
    several); None when one model folder is (``MODEL_DIR``)."""
    mount = _kserve_mount(settings)
    if mount is not None:
        return None if is_model_folder(mount) else mount
    return settings.model_repository


def model_folders(settings: Settings) -> dict[str | None, Path]:
    """The model folders to serve, by name (None: by their bundle's name): the repository's
    (``repository_root``), else the one model folder, ``MODEL_DIR`` or KServe's mount."""
    repository = repository_root(settings)
    mount = _kserve_mount(settings)
    if mount is not None and "model_dir" in settings.model_fields_set:
        logger.warning("STORAGE_URI is set: serving KServe's %s, not MODEL_DIR", mount)
    if repository is None:
        return {None: mount or settings.model_dir}
    found: dict[str | None, Path] = {
        name: folder for name, folder in repository_models(repository).items()
    }
    if not found:
        raise BundleError(
            f"{repository}: no model folder (a bundle, or numbered versions of one) in the "
            "model repository"
        )
    return found


def model_settings(settings: Settings, folder: Path) -> tuple[ModelConfig, Settings]:
    """A model folder's ``config.json`` (a folder of versions may have one) and the settings it
    makes for that model."""
    config = read_model_config(folder) if is_versioned(folder) else ModelConfig()
    served = config.apply(settings)
    if served.max_batch_size > served.max_queue_size:
        raise BundleError(
            f"{folder / CONFIG_FILE}: max_batch_size {served.max_batch_size} is above the "
            f"server's max_queue_size {served.max_queue_size}: no batch that large could queue"
        )
    return config, served


def _close(versions: Iterable[ServedVersion]) -> None:
    for version in versions:
        version.pipeline.runner.close()


@dataclass(frozen=True)
class VersionLoader:
    """How a server loads model versions, at start-up and from its repository alike: into the
    admission gate and decode workers they all share, with ``load`` reading a runner
    (``load_runner``, or a benchmark's own)."""

    gate: AdmissionGate
    workers: DecodeWorkers
    load: RunnerLoader = load_runner

    def version(
        self, settings: Settings, version: str, bundle_dir: Path, held_bytes: int = 0
    ) -> ServedVersion:
        """Version ``version`` of a model from ``bundle_dir``, not yet warm (the runner is closed
        again if a later step refuses it): ``BundleError``/``DeviceError``, or
        ``ModelMemoryError`` when it does not fit beside the ``held_bytes`` already served."""
        at_version = settings.model_copy(update={"model_dir": bundle_dir})
        try:
            runner = self.load(at_version)
        except torch.cuda.OutOfMemoryError:
            raise ModelMemoryError(
                f"{bundle_dir}: does not fit in the device's free memory"
            ) from None
        try:
            check_memory(at_version, runner, held_bytes)
            check_abstain_labels(at_version, runner.labels)
            pipeline = InferencePipeline(runner, at_version, self.gate, self.workers)
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

    def model(
        self, settings: Settings, name: str | None, folder: Path, held_bytes: int = 0
    ) -> ServedModel:
        """The versions of the model in ``folder`` its policy serves, loaded, not yet warm, served
        as ``name`` (None: its bundle's name)."""
        config, served_settings = model_settings(settings, folder)
        versions: dict[int, ServedVersion] = {}
        try:
            for number, bundle_dir in served_versions(folder, config.version_policy).items():
                held = held_bytes + sum(v.weight_bytes for v in versions.values())
                versions[number] = self.version(served_settings, str(number), bundle_dir, held)
        except BaseException:
            _close(versions.values())
            raise
        name = name or versions[max(versions)].manifest.name
        return ServedModel(name, folder, config, served_settings, versions)


def build_service(settings: Settings, load: RunnerLoader = load_runner) -> InferenceService:
    """The loaded, not yet warm, service for ``settings``: ``BundleError``/``DeviceError`` when
    a model cannot be served here (start-up stops, naming it: at start every model must load,
    while later a model refused leaves the others serving)."""
    loader = VersionLoader(admission_gate(settings), decode_workers(settings), load)
    models: dict[str, ServedModel] = {}
    try:
        for name, folder in model_folders(settings).items():
            held = sum(model.weight_bytes for model in models.values())
            model = loader.model(settings, name, folder, held)
            models[model.name] = model
    except BaseException:  # nothing left half there: what was made is closed
        _close(v for model in models.values() for v in model.versions.values())
        loader.workers.close()
        raise
    metrics = ServiceMetrics()
    runners = [v.pipeline.runner for m in models.values() for v in m.versions.values()]
    metrics.set_model_load_seconds(sum(runner.load_seconds for runner in runners))
    if runners[0].on_cuda:
        metrics.watch_gpu(runners[0].device)
    state = ServiceState(settings.drain_timeout_s)
    service = InferenceService(settings, state, metrics, loader, models)
    service.describe()
    metrics.watch(
        in_flight=lambda: service.state.requests_in_flight,
        queue_depth=lambda: sum(p.batcher.queue_depth for p in service.pipelines),
        saturation=lambda: loader.gate.saturation,
    )
    return service
