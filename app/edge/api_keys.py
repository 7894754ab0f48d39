"""The API keys: read once from the settings, compared in constant time, never logged.

Shared by the HTTP routes' bearer check (``app.edge.routes.auth``) and gRPC's ``authorization``
metadata (``app.edge.grpc``).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from app.settings import Settings


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


class KeyRing:
    """The accepted keys, as digests: ``holds`` tells whether a presented key is one of them."""

    def __init__(self, keys: Iterable[str]) -> None:
        self._digests = tuple(_digest(key) for key in keys)
        if not self._digests:
            raise ValueError("a key ring needs at least one key")

    def holds(self, presented: str) -> bool:
        digest = _digest(presented)
        matched = False
        for known in self._digests:  # every key is compared: no early exit tells which matched
            matched |= hmac.compare_digest(digest, known)
        return matched
