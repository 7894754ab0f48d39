"""``ResnetClient`` and ``AsyncResnetClient``: typed calls to a resnet-serve server over httpx.

Both send the same requests and read the same answers (the helpers below); only the I/O differs.
Answers are parsed with the models the server emits them with (``app.wire.rest``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self, TypeVar
from urllib.parse import unquote

import httpx
from pydantic import BaseModel, ValidationError

from app.client.models import (
    Explanation,
    Health,
    HeatMap,
    ModelInfo,
    Prediction,
    ResnetConnectionError,
    ResnetServeError,
    ScoredLabel,
)
from app.wire.rest import ErrorResponse

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT_S = 60.0
ImageInput = str | os.PathLike[str] | bytes
Target = str | int | None  # a label, or an index into ``ModelInfo.labels``; None: the top class
Body = TypeVar("Body", bound=BaseModel)


def _http_options(
    url: str, api_key: str | None, timeout: float, model: str | None
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    # The model rides on every call as ``?model=``: /predict, /explain and /model read it.
    params = {"model": model} if model else {}
    return {"base_url": url, "headers": headers, "params": params, "timeout": timeout}


def _file_part(image: ImageInput, position: int) -> tuple[str, bytes, str]:
    """One multipart file: a path's name and bytes, or bytes named by their position."""
    if isinstance(image, bytes):
        name, data = f"image-{position}", image
    else:
        name, data = Path(image).name, Path(image).read_bytes()
    # A filename makes it a file part; the server sniffs the format, not the content type.
    return name, data, "application/octet-stream"


def _predict_request(
    images: ImageInput | Sequence[ImageInput], top_k: int | None, request_id: str | None
) -> dict[str, Any]:
    """Keyword arguments for ``POST /predict``: every image as one multipart ``files`` part."""
    if isinstance(images, str | bytes | os.PathLike):  # one image, not a sequence of characters
        images = [images]
    files = [("files", _file_part(image, position)) for position, image in enumerate(images)]
    if not files:
        raise ValueError("predict needs at least one image")
    return {
        "files": files,
        "params": {} if top_k is None else {"top_k": top_k},
        "headers": {"X-Request-ID": request_id} if request_id else {},
    }


def _explain_request(image: ImageInput, target: Target, *, as_json: bool) -> dict[str, Any]:
    """Keyword arguments for ``POST /explain``: the image as the multipart ``file`` part."""
    params = {"format": "json" if as_json else "png"}
    if target is not None:
        params["target"] = str(target)
    return {"files": [("file", _file_part(image, 0))], "params": params}


@contextmanager
def _no_answer_as_error(url: str) -> Iterator[None]:
    try:
        yield
    except httpx.TransportError as exc:  # refused, DNS, timeout, broken connection, bad URL
        raise ResnetConnectionError(url, str(exc) or type(exc).__name__) from exc


def _decode(response: httpx.Response, body: type[Body], ok: bool) -> Body:
    """The answer as ``body`` when ``ok``; otherwise raise the server's error, or say what came
    back."""
    if ok:
        try:
            return body.model_validate_json(response.content)
        except ValidationError:
            pass  # not JSON, or not the API's: reported below
    raise _error(response)


def _error(response: httpx.Response) -> ResnetServeError:
    """The server's own error, or one saying what came back instead."""
    request_id = response.headers.get("x-request-id")
    try:
        error = ErrorResponse.model_validate_json(response.content).error
    except ValidationError:
        snippet = " ".join(response.text.split())[:200] or "(empty body)"
        reason = response.reason_phrase or "unexpected answer"
        message = f"{reason} (not a resnet-serve answer): {snippet}"
        return ResnetServeError(response.status_code, "unexpected_response", message, request_id)
    return ResnetServeError(response.status_code, error.code, error.message, request_id)


def _prediction(response: httpx.Response) -> Prediction:
    return _decode(response, Prediction, response.is_success)


def _model_info(response: httpx.Response) -> ModelInfo:
    return _decode(response, ModelInfo, response.is_success)


def _explanation(response: httpx.Response) -> Explanation:
    """The PNG and the ``X-Explained-*`` headers; any other answer is decoded as an error."""
    headers = response.headers
    if response.is_success and headers.get("content-type") == "image/png":
        try:
            # The label is percent-encoded UTF-8: header values carry ASCII only.
            explained = ScoredLabel(
                unquote(headers["x-explained-label"]),
                int(headers["x-explained-index"]),
                float(headers["x-explained-score"]),
            )
        except (KeyError, ValueError):
            pass  # a PNG without the headers: not the API's, reported below
        else:
            return Explanation(explained, response.content)
    raise _error(response)


def _heat_map(response: httpx.Response) -> HeatMap:
    return _decode(response, HeatMap, response.is_success)


def _health(response: httpx.Response) -> Health:
    # 503 is an answer here, not a failure: the body says why the server is not ready.
    return _decode(response, Health, response.status_code in (200, 503))


class ResnetClient:
    """A blocking client; use it as a context manager (or call ``close``) to free its connections.

    ``api_key`` is sent as ``Authorization: Bearer``; ``model`` names the model every call is for
    (needed when the server serves several; ``model()`` lists them). Every non-2xx answer raises
    ``ResnetServeError``; no answer at all raises ``ResnetConnectionError``.
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        model: str | None = None,
    ) -> None:
        self.url = url
        self._http = httpx.Client(**_http_options(url, api_key, timeout, model))

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

    def model(self) -> ModelInfo:
        """What is served: name, labels in output order, input size, preprocessing, provenance,
        and the names of every model the server serves."""
        with _no_answer_as_error(self.url):
            return _model_info(self._http.get("/model"))

    def explain(self, image: ImageInput, target: Target = None) -> Explanation:
        """Grad-CAM of ``target`` (a label or an index; default the top class) for one image, as a
        PNG overlay on the model's input crop."""
        request = _explain_request(image, target, as_json=False)
        with _no_answer_as_error(self.url):
            return _explanation(self._http.post("/explain", **request))

    def explain_map(self, image: ImageInput, target: Target = None) -> HeatMap:
        """``explain`` as numbers: the Grad-CAM map itself instead of a picture of it."""
        request = _explain_request(image, target, as_json=True)
        with _no_answer_as_error(self.url):
            return _heat_map(self._http.post("/explain", **request))

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
        self,
        url: str = DEFAULT_URL,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        model: str | None = None,
    ) -> None:
        self.url = url
        self._http = httpx.AsyncClient(**_http_options(url, api_key, timeout, model))

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

    async def model(self) -> ModelInfo:
        """What is served: name, labels in output order, input size, preprocessing, provenance,
        and the names of every model the server serves."""
        with _no_answer_as_error(self.url):
            return _model_info(await self._http.get("/model"))

    async def explain(self, image: ImageInput, target: Target = None) -> Explanation:
        """Grad-CAM of ``target`` (a label or an index; default the top class) for one image, as a
        PNG overlay on the model's input crop."""
        request = _explain_request(image, target, as_json=False)
        with _no_answer_as_error(self.url):
            return _explanation(await self._http.post("/explain", **request))

    async def explain_map(self, image: ImageInput, target: Target = None) -> HeatMap:
        """``explain`` as numbers: the Grad-CAM map itself instead of a picture of it."""
        request = _explain_request(image, target, as_json=True)
        with _no_answer_as_error(self.url):
            return _heat_map(await self._http.post("/explain", **request))

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
