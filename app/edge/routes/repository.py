"""Triton's model repository extension over HTTP, behind the API keys: the index of every model's
versions, and ``load``/``unload`` of one model (``app.serving.repository``).

``load`` serves the versions its policy selects, each loaded and warmed up before it is swapped in;
a version that cannot serve is a 400 naming why, while what is served goes on. ``unload`` stops
serving the model (its readiness 503) and frees its memory until ``load``.
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
    """Every version of every model, those served ``READY``."""
    entries = _repository(request).index(ready_only=bool(body and body.ready))
    return RepositoryIndex([RepositoryModel(**vars(entry)) for entry in entries])


@router.post("/models/{name}/load", response_class=Response, responses=LOAD_ERRORS)
async def load_model(request: Request, name: str) -> Response:
    """Serve the model (again, or new in the repository) on the versions its policy selects."""
    try:
        await _repository(request).load(name)
    except VersionRefusedError as exc:
        raise as_api_error(exc) from exc
    return Response(status_code=200)


@router.post("/models/{name}/unload", response_class=Response, responses=LOAD_ERRORS)
async def unload_model(request: Request, name: str) -> Response:
    """Stop serving the model, and free its memory, until it is loaded again."""
    await _repository(request).unload(name)
    return Response(status_code=200)
