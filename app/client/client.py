"""``ResnetClient`` and ``AsyncResnetClient``: typed calls to a resnet-serve server over httpx.

Both send the same requests and read the same answers (the helpers below); only the I/O differs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self, TypeVar

import httpx

from app.client.models import (
    Health,
    Prediction,
    ResnetConnectionError,
    ResnetServeError,
)

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT_S = 60.0
ImageInput = str | os.PathLike[str] | bytes
T = TypeVar("T")


def _http_options(url: str, api_key: str | None, timeout: float) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    return {"base_url": url, "headers": headers, "timeout": timeout}


def _predict_request(
    images: ImageInput | Sequence[ImageInput], top_k: int | None, request_id: str | None
) -> dict[str, Any]:
    """Keyword arguments for ``POST /predict``: every image as one multipart ``files`` part."""
    if isinstance(images, str | bytes | os.PathLike):  # one image, not a sequence of characters
        images = [images]
    files = []
    for position, image in enumerate(images):
        if isinstance(image, bytes):
            name, data = f"image-{position}", image
        else:
            name, data = Path(image).name, Path(image).read_bytes()
        # A filename makes it a file part; the server sniffs the format, not the content type.
        files.append(("files", (name, data, "application/octet-stream")))
    if not files:
        raise ValueError("predict needs at least one image")
    return {
        "files": files,
        "params": {} if top_k is None else {"top_k": top_k},
        "headers": {"X-Request-ID": request_id} if request_id else {},
    }


@contextmanager
def _no_answer_as_error(url: str) -> Iterator[None]:
    try:
        yield
    except httpx.TransportError as exc:  # refused, DNS, timeout, broken connection, bad URL
        raise ResnetConnectionError(url, str(exc) or type(exc).__name__) from exc


def _decode(response: httpx.Response, parse: Callable[[dict[str, Any]], T], ok: bool) -> T:
    """``parse`` the body when ``ok``; otherwise raise the server's error, or say what came back."""
    request_id = response.headers.get("x-request-id")
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        if ok:
            try:
                return parse(body)
            except (KeyError, TypeError):
                pass  # JSON, but not the API's: reported below
        error = body.get("error")
        if isinstance(error, dict) and "code" in error and "message" in error:
            status, code, message = response.status_code, error["code"], error["message"]
            raise ResnetServeError(status, str(code), str(message), request_id)
    snippet = " ".join(response.text.split())[:200] or "(empty body)"
    message = (
        f"{response.reason_phrase or 'unexpected answer'} (not a resnet-serve answer): {snippet}"
    )
    raise ResnetServeError(response.status_code, "unexpected_response", message, request_id)


def _prediction(response: httpx.Response) -> Prediction:
    return _decode(response, Prediction.from_json, response.is_success)


def _health(response: httpx.Response) -> Health:
    # 503 is an answer here, not a failure: the body says why the server is not ready.
    ready = response.status_code == 200
    ok = ready or response.status_code == 503
    return _decode(response, lambda body: Health.from_json(body, ready), ok)


class ResnetClient:
    """A blocking client; use it as a context manager (or call ``close``) to free its connections.

    ``api_key`` is sent as ``Authorization: Bearer``. Every non-2xx answer raises
    ``ResnetServeError``; no answer at all raises ``ResnetConnectionError``.
    """

    def __init__(
        self, url: str = DEFAULT_URL, api_key: str | None = None, timeout: float = DEFAULT_TIMEOUT_S
    ) -> None:
        self.url = url
        self._http = httpx.Client(**_http_options(url, api_key, timeout))

    def predict(
        self,
        images: ImageInput | Sequence[ImageInput],
        top_k: int | None = None,
        *,
        request_id: str | None = None,
    ) -> Prediction:
        """Classify the images (paths or encoded bytes) in one request; results keep their order."""
        request = _predict_request(images, top_k, request_id)
        with _no_answer_as_error(self.url):
            return _prediction(self._http.post("/predict", **request))

    def health(self) -> Health:
        """The readiness document; ``ready`` is False (not an error) while the server is not ready."""
        with _no_answer_as_error(self.url):
            return _health(self._http.get("/health/ready"))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncResnetClient:
    """``ResnetClient`` for asyncio: the same methods, awaited; ``async with`` closes it."""

    def __init__(
        self, url: str = DEFAULT_URL, api_key: str | None = None, timeout: float = DEFAULT_TIMEOUT_S
    ) -> None:
        self.url = url
        self._http = httpx.AsyncClient(**_http_options(url, api_key, timeout))

    async def predict(
        self,
        images: ImageInput | Sequence[ImageInput],
        top_k: int | None = None,
        *,
        request_id: str | None = None,
    ) -> Prediction:
        """Classify the images (paths or encoded bytes) in one request; results keep their order."""
        request = _predict_request(images, top_k, request_id)
        with _no_answer_as_error(self.url):
            return _prediction(await self._http.post("/predict", **request))

    async def health(self) -> Health:
        """The readiness document; ``ready`` is False (not an error) while the server is not ready."""
        with _no_answer_as_error(self.url):
            return _health(await self._http.get("/health/ready"))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
