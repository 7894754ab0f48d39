"""GET /model: what the served model is, for clients and for the web page.

Open like the health routes (no API key): it describes the model, it runs nothing.
"""

from __future__ import annotations

from fastapi import APIRouter

from app.edge.routes.dependencies import ServiceDep
from app.wire.rest import ModelInfo, PreprocessingInfo

router = APIRouter()


@router.get("/model", response_model=ModelInfo)
async def model_info(service: ServiceDep) -> ModelInfo:
    """The model's name, architecture, labels in output order, input size, preprocessing and
    provenance."""
    manifest = service.manifest
    spec = manifest.preprocessing
    return ModelInfo(
        name=manifest.name,
        version=service.version,
        arch=manifest.arch,
        num_classes=manifest.num_classes,
        labels=manifest.labels,
        input_size=spec.input_size,
        preprocessing=PreprocessingInfo(**spec.model_dump()),
        weights_sha256=manifest.weights_sha256,
        provenance=manifest.provenance.model_dump(mode="json"),
        temperature=manifest.temperature,
        abstain_threshold=service.current.abstain_threshold,
        abstain_labels=service.current.abstain_labels,
    )
