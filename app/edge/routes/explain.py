"""POST /explain: one image in, a Grad-CAM heat map of one class out (PNG overlay or JSON).

Admitted, deadlined and decoded exactly like /predict; the Grad-CAM itself runs on the
``Explainer``'s own thread and model copy (``app.serving.explainer``), which the service makes on the first
request.
"""

from __future__ import annotations

import asyncio
import string
from typing import Annotated, Literal
from urllib.parse import quote

from fastapi import APIRouter, Query, Request, Response

from app.edge.http_errors import ApiError
from app.edge.routes.dependencies import ModelQuery, ServiceDep
from app.edge.routes.inference import inference_request
from app.edge.routes.predict import ERROR_RESPONSES, REQUEST_BODY
from app.edge.routes.uploads import ImagePart, read_images
from app.serving.errors import TooManyImagesError
from app.serving.explainer import Explainer, ExplainSlot, GradCam, target_index
from app.serving.service import InferenceCall
from app.wire.rest import ExplainResponse

router = APIRouter()

# Printable ASCII but "%" passes unchanged; anything else in a label is percent-encoded UTF-8.
_HEADER_SAFE = "".join(c for c in string.printable if c.isprintable() and c != "%")


EXPLAINED_HEADERS = {
    "X-Explained-Label": "The class explained (non-ASCII characters and % percent-encoded).",
    "X-Explained-Index": "Its position in the model's label list.",
    "X-Explained-Score": "Its softmax probability.",
}

RESPONSES: dict[int | str, dict] = {
    **ERROR_RESPONSES,
    200: {
        "description": "format=png: the heat map (jet, alpha 0.5) over the model's input crop; "
        "format=json: the map itself.",
        "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
        "headers": {name: {"description": text} for name, text in EXPLAINED_HEADERS.items()},
    },
}


@router.post(
    "/explain",
    response_model=ExplainResponse,
    responses=RESPONSES,
    openapi_extra={"requestBody": REQUEST_BODY},
)
async def explain(
    request: Request,
    response: Response,
    service: ServiceDep,
    target: Annotated[
        str | None,
        Query(description="Class to explain: a label, or an index; default the top class."),
    ] = None,
    format: Annotated[
        Literal["png", "json"],
        Query(description="png: an overlay image; json: the map as numbers."),
    ] = "png",
    model: ModelQuery = None,
) -> Response | ExplainResponse:
    """Show which part of one image (multipart field ``file``, or a raw image body) made the model
    answer a class: Grad-CAM from the last stage, at the model's input size."""
    parts: list[ImagePart] = []
    async with inference_request(request, service, lambda _: parts[0].name, model) as http:
        index = target_index(http.call.version.manifest.labels, target)
        explainer = await service.explainer(http.call.model)
        # From here to the end of the pass, upload and decoding included; taken before the body
        # is read, like admission.
        with explainer.reserve() as slot:
            parts += await http.upload(_read_one_image(request, service.settings.max_body_bytes))
            work = _explain(http.call, explainer, slot, parts[0].data, index)
            explanation = await http.answer(work, images=1)
    headers = _explained_headers(explanation)
    if format == "json":
        response.headers.update(headers)
        return await asyncio.to_thread(_as_json, explanation)
    png = await asyncio.to_thread(explanation.overlay_png)
    return Response(png, media_type="image/png", headers=headers)


async def _read_one_image(request: Request, max_body_bytes: int) -> list[ImagePart]:
    try:
        return await read_images(request, max_body_bytes, max_images=1)
    except TooManyImagesError as exc:
        raise ApiError(
            413, "too_many_images", "/explain takes one image per request; send one 'file'"
        ) from exc


async def _explain(
    call: InferenceCall, explainer: Explainer, slot: ExplainSlot, data: bytes, target: int | None
) -> GradCam:
    return await explainer.explain(await call.decode(data), target, slot)


def _explained_headers(explanation: GradCam) -> dict[str, str]:
    return {
        "X-Explained-Label": quote(explanation.label, safe=_HEADER_SAFE),
        "X-Explained-Index": str(explanation.index),
        "X-Explained-Score": f"{explanation.score:.6f}",
    }


def _as_json(explanation: GradCam) -> ExplainResponse:
    height, width = explanation.cam.shape
    rows = (
        explanation.cam.double().mul(1e4).round().div(1e4).tolist()
    )  # 4 decimals: a third the bytes
    return ExplainResponse(
        label=explanation.label,
        index=explanation.index,
        score=explanation.score,
        width=width,
        height=height,
        map=rows,
    )
