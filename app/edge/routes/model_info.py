"""GET /model: what a served model is, and which are, for clients and for the web page.

Open like the health routes (no API key): it describes the model, it runs nothing.
"""

from __future__ import annotations

from fastapi import APIRouter

from app.edge.routes.dependencies import ModelQuery, ServiceDep
from app.wire.rest import ErrorResponse, ModelInfo, PreprocessingInfo

router = APIRouter()


@router.get("/model", response_model=ModelInfo, responses={404: {"model": ErrorResponse}})
async def model_info(service: ServiceDep, model: ModelQuery = None) -> ModelInfo:
    """A model's name, architecture, labels in output order, input size, preprocessing and
    provenance, at its latest version, and the names of every model served; without ``model``,
    the first by name that serves (as the health report's)."""
    chosen = service.model(model) if model else service.first_model
    served = chosen.latest
    manifest = served.manifest
    spec = manifest.preprocessing
    return ModelInfo(
        name=chosen.name,
        version=served.version,
        models=tuple(sorted(service.models)),
        arch=manifest.arch,
        num_classes=manifest.num_classes,
        labels=manifest.labels,
        input_size=spec.input_size,
        preprocessing=PreprocessingInfo(**spec.model_dump()),
        weights_sha256=manifest.weights_sha256,
        provenance=manifest.provenance.model_dump(mode="json"),
        temperature=manifest.temperature,
        abstain_threshold=served.abstain_threshold,
        abstain_labels=served.abstain_labels,
    )
