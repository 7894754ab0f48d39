"""The served models as the Open Inference Protocol describes them, for every transport.

Metadata, Triton's model configuration, readiness and the statistics extension are built here once,
as the pydantic models of ``app.wire.open_inference``; the HTTP routes answer them as JSON and the
gRPC servicer converts the same objects to its messages. Every model served is described at the
version a request names, or its latest (``app.serving.served_model``).

The configuration follows Triton's model-configuration rules (docs/open-inference.md cites them):
with batching (``max_batch_size`` > 0) every tensor's ``dims`` leave out the batch dimension and are
never empty, so one encoded image is ``dims: [1]`` (sent as ``[N, 1]``; ``[N]`` is accepted too)
and one flag is ``dims: [1]``; ``IMAGE`` and ``PIXELS`` are alternatives, so both are ``optional``.
"""

from __future__ import annotations

from importlib.metadata import version as package_version

from app.edge.open_inference.codec import (
    ABSTAINED,
    IMAGE_INPUT,
    PIXELS_INPUT,
    PROBABILITIES,
)
from app.serving.served_model import ServedVersion
from app.serving.service import InferenceService
from app.serving.statistics import Duration
from app.wire.open_inference import (
    InferBatchStatistics,
    InferStatistics,
    ModelMetadata,
    ModelStatistics,
    ModelStatisticsResponse,
    ServerMetadata,
    StatisticDuration,
    TensorMetadata,
    TritonInputConfig,
    TritonModelConfig,
    TritonTensorConfig,
)

SERVER_NAME = "resnet-serve"
PLATFORM = "pytorch"
EXTENSIONS = [
    "classification",
    "binary_tensor_data",
    "model_configuration",
    "statistics",
    "model_repository",
]


def server_metadata() -> ServerMetadata:
    return ServerMetadata(
        name=SERVER_NAME, version=package_version(SERVER_NAME), extensions=EXTENSIONS
    )


def _tensors(served: ServedVersion) -> tuple[list[TensorMetadata], list[TensorMetadata]]:
    """The model's inputs and outputs, batch dimension first (-1): the one source of the
    metadata and the configuration."""
    return (
        [
            TensorMetadata(name=IMAGE_INPUT, datatype="BYTES", shape=[-1, 1]),
            TensorMetadata(name=PIXELS_INPUT, datatype="UINT8", shape=[-1, *served.image_shape]),
        ],
        [
            TensorMetadata(
                name=PROBABILITIES, datatype="FP32", shape=[-1, served.manifest.num_classes]
            ),
            TensorMetadata(name=ABSTAINED, datatype="BOOL", shape=[-1, 1]),
        ],
    )


def model_metadata(service: InferenceService, name: str, version: str | None) -> ModelMetadata:
    """Model ``name`` at ``version`` (else its latest), with every version it serves."""
    model = service.model(name)
    inputs, outputs = _tensors(model.version(version))
    return ModelMetadata(
        name=model.name,
        versions=[str(number) for number in sorted(model.versions)],
        platform=PLATFORM,
        inputs=inputs,
        outputs=outputs,
    )


def _triton_type(datatype: str) -> str:
    # Triton names BYTES TYPE_STRING.
    return "TYPE_STRING" if datatype == "BYTES" else f"TYPE_{datatype}"


def model_config(service: InferenceService, name: str, version: str | None) -> TritonModelConfig:
    """Triton's model configuration: the metadata's tensors in Triton's terms, and the largest
    batch a request may carry."""
    model = service.model(name)
    served = model.version(version)
    inputs, outputs = _tensors(served)
    return TritonModelConfig(
        name=model.name,
        platform=PLATFORM,
        # Triton clients send batches up to max_batch_size: promise only what both limits allow.
        max_batch_size=min(
            served.pipeline.runner.max_batch_size, service.settings.max_images_per_request
        ),
        input=[
            TritonInputConfig(
                name=t.name, data_type=_triton_type(t.datatype), dims=t.shape[1:], optional=True
            )
            for t in inputs
        ],
        output=[
            TritonTensorConfig(name=t.name, data_type=_triton_type(t.datatype), dims=t.shape[1:])
            for t in outputs
        ],
    )


def _duration(duration: Duration) -> StatisticDuration:
    return StatisticDuration(count=duration.count, ns=duration.ns)


def model_statistics(
    service: InferenceService, name: str | None = None, version: str | None = None
) -> ModelStatisticsResponse:
    """The statistics since start of every version served (``app.serving.statistics``): of
    model ``name`` only when given, and of its ``version`` only when given."""
    models = list(service.models.values()) if name is None else [service.model(name)]
    if version:
        chosen = [(model.name, model.version(version)) for model in models]
    else:
        chosen = [(model.name, served) for model in models for served in model.versions.values()]
    return ModelStatisticsResponse(
        model_stats=[_version_statistics(model_name, served) for model_name, served in chosen]
    )


def _version_statistics(name: str, served: ServedVersion) -> ModelStatistics:
    stats = served.pipeline.statistics
    none = StatisticDuration(count=0, ns=0)
    return ModelStatistics(
        name=name,
        version=served.version,
        last_inference=stats.last_inference_ms,
        inference_count=stats.inference_count,
        execution_count=stats.execution_count,
        inference_stats=InferStatistics(
            success=_duration(stats.success),
            fail=_duration(stats.fail),
            queue=_duration(stats.queue),
            compute_input=_duration(stats.compute_input),
            compute_infer=_duration(stats.compute_infer),
            compute_output=_duration(stats.compute_output),
            cache_hit=none,
            cache_miss=none,
        ),
        batch_stats=[
            InferBatchStatistics(
                batch_size=size,
                compute_input=StatisticDuration(count=passes.count, ns=0),
                compute_infer=_duration(passes),
                compute_output=StatisticDuration(count=passes.count, ns=0),
            )
            for size, passes in sorted(stats.batches.items())
        ],
    )
