"""Optional bearer API keys for the inference routes.

With no key configured every route is open (a local or already-guarded deployment). With keys, each
inference route needs ``Authorization: Bearer <key>``; operations routes (``/health*``, ``/metrics``)
and the docs stay open so probes and scrapers need no secret. Keys are read once, when the app is
built, and are never logged.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from typing import Annotated

from fastapi import Depends
from fastapi.params import Depends as DependsParam
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.edge.http_errors import ApiError
from app.settings import Settings

# auto_error=False: a missing or non-bearer header reaches ApiKeyGuard, which answers with our own
# error shape. The scheme also puts the "Authorize" button on /docs.
_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="One of the keys in RESNET_SERVE_API_KEYS or RESNET_SERVE_API_KEYS_FILE.",
)


class ApiKeysError(ValueError):
    """The configured API keys file cannot be used; start-up must stop."""


def _clean(keys: Iterable[str]) -> set[str]:
    return {key.strip() for key in keys if key.strip()}


def load_api_keys(settings: Settings) -> frozenset[str]:
    """The accepted keys: ``api_keys`` (comma-separated) plus one per line of ``api_keys_file``.

    A keys file that is named but missing, unreadable or empty is an error rather than "no keys":
    silently serving without authentication because a secret failed to mount would be the worst
    outcome.
    """
    keys = _clean(settings.api_keys.get_secret_value().split(","))
    path = settings.api_keys_file
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise ApiKeysError(f"{path}: cannot read the API keys file ({reason})") from None
        except UnicodeDecodeError:
            raise ApiKeysError(f"{path}: the API keys file is not UTF-8 text") from None
        from_file = _clean(text.splitlines())
        if not from_file:
            raise ApiKeysError(
                f"{path}: the API keys file holds no key; refusing to serve without authentication"
            )
        keys |= from_file
    return frozenset(keys)


def _digest(key: str) -> bytes:
    # Comparing fixed-length digests keeps the comparison time independent of the keys' lengths.
    return hashlib.sha256(key.encode("utf-8")).digest()


class ApiKeyGuard:
    """FastAPI dependency: refuse a request unless it carries one of ``keys`` as a bearer token."""

    def __init__(self, keys: Iterable[str]) -> None:
        self._digests = tuple(_digest(key) for key in keys)
        if not self._digests:
            raise ValueError("ApiKeyGuard needs at least one key")

    async def __call__(
        self, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
    ) -> None:
        if credentials is None:
            raise _unauthorized("missing bearer token: send 'Authorization: Bearer <key>'")
        presented = _digest(credentials.credentials)
        matched = False
        for digest in self._digests:  # every key is compared: no early exit tells which matched
            matched |= hmac.compare_digest(presented, digest)
        if not matched:
            raise _unauthorized("invalid API key")


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, {"WWW-Authenticate": "Bearer"})


def inference_dependencies(settings: Settings) -> list[DependsParam]:
    """Dependencies for every inference router: the key check when keys are configured, else none.

    Raises ``ApiKeysError`` when the keys file cannot be used.
    """
    keys = load_api_keys(settings)
    return [Depends(ApiKeyGuard(keys))] if keys else []
