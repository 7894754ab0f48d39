"""Optional bearer API keys for the inference routes.

With no key configured every route is open (a local or already-guarded deployment). With keys, each
inference route needs ``Authorization: Bearer <key>``; operations routes (``/health*``, ``/metrics``)
and the docs stay open so probes and scrapers need no secret. Keys are read once, when the app is
built, and are never logged.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated

from fastapi import Depends
from fastapi.params import Depends as DependsParam
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.edge.api_keys import KeyRing, load_api_keys
from app.edge.http_errors import ApiError
from app.settings import Settings

# auto_error=False: a missing or non-bearer header reaches ApiKeyGuard, which answers with our own
# error shape. The scheme also puts the "Authorize" button on /docs.
_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="One of the keys in RESNET_SERVE_API_KEYS or RESNET_SERVE_API_KEYS_FILE.",
)


class ApiKeyGuard:
    """FastAPI dependency: refuse a request unless it carries one of ``keys`` as a bearer token."""

    def __init__(self, keys: Iterable[str]) -> None:
        self._keys = KeyRing(keys)

    async def __call__(
        self, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
    ) -> None:
        if credentials is None:
            raise _unauthorized("missing bearer token: send 'Authorization: Bearer <key>'")
        if not self._keys.holds(credentials.credentials):
            raise _unauthorized("invalid API key")


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, {"WWW-Authenticate": "Bearer"})


def inference_dependencies(settings: Settings) -> list[DependsParam]:
    """Dependencies for every inference router: the key check when keys are configured, else none.

    Raises ``ApiKeysError`` when the keys file cannot be used.
    """
    keys = load_api_keys(settings)
    return [Depends(ApiKeyGuard(keys))] if keys else []
