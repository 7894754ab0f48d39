"""GET /model: what the served model is, for clients and for the web page.

Open like the health routes (no API key): it describes the model, it runs nothing.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from app.edge.routes.dependencies import ServiceDep
from app.edge.routes.inference_errors import inference_errors
from app.wire.rest import ErrorResponse, ModelInfo, PreprocessingInfo

router = APIRouter()


@router.get("/model", response_model=ModelInfo, responses={503: {"model": ErrorResponse}})
async def model_info(request: Request, service: ServiceDep) -> ModelInfo:
    """The model's name, architecture, labels in output order, input size, preprocessing and
    provenance; 503 ``not_ready`` until the model is loaded."""
    with inference_errors(request.state.request_id, service.settings.request_timeout_s):
        manifest = service.manifest
    spec = manifest.preprocessing
    return ModelInfo(
        name=manifest.name,
        arch=manifest.arch,
        num_classes=manifest.num_classes,
        labels=manifest.labels,
        input_size=spec.input_size,
        preprocessing=PreprocessingInfo(**spec.model_dump()),
        weights_sha256=manifest.weights_sha256,
        provenance=manifest.provenance.model_dump(mode="json"),
        temperature=manifest.temperature,
        abstain_threshold=service.abstain_threshold,
        abstain_labels=sorted(service.settings.abstain_label_names),
    )
