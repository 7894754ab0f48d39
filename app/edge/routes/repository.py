"""Triton's model repository extension over HTTP, behind the API keys: the index of versions, and
``load``/``unload`` of the model (``app.serving.repository``).

``load`` serves the model again if it was unloaded, on its newest version, loaded and warmed up
before it is swapped in; a version that cannot serve is a 400 naming why, while the served one
goes on. ``unload`` stops serving it (readiness 503) until ``load``.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from app.edge.http_errors import V2_PREFIX, as_api_error
from app.edge.routes.v2 import MODEL_ERRORS, v2_errors
from app.serving.repository import ModelRepository, VersionRefusedError
from app.wire.open_inference import RepositoryIndex, RepositoryIndexRequest, RepositoryModel

router = APIRouter(prefix=V2_PREFIX + "/repository", tags=["Open Inference Protocol (v2)"])
LOAD_ERRORS = MODEL_ERRORS | v2_errors(400, 401)


def _repository(request: Request) -> ModelRepository:
    return request.app.state.repository


@router.post("/index", responses=v2_errors(401, 422))
async def repository_index(
    request: Request, body: RepositoryIndexRequest | None = None
) -> RepositoryIndex:
    """Every version of the model in ``MODEL_DIR``, the served one ``READY``."""
    entries = _repository(request).index(ready_only=bool(body and body.ready))
    return RepositoryIndex([RepositoryModel(**vars(entry)) for entry in entries])


@router.post("/models/{name}/load", response_class=Response, responses=LOAD_ERRORS)
async def load_model(request: Request, name: str) -> Response:
    """Serve the model (again) on its newest version."""
    try:
        await _repository(request).load(name)
    except VersionRefusedError as exc:
        raise as_api_error(exc) from exc
    return Response(status_code=200)


@router.post("/models/{name}/unload", response_class=Response, responses=LOAD_ERRORS)
async def unload_model(request: Request, name: str) -> Response:
    """Stop serving the model until it is loaded again."""
    await _repository(request).unload(name)
    return Response(status_code=200)
