"""What the client hands back: the server's JSON answers, as the very models the server emits them
with (``app.wire.rest``), under the names the client has always given them; /explain's PNG, which is
not JSON; and the client's errors."""

from __future__ import annotations

from dataclasses import dataclass

from app.wire.rest import (
    ExplainResponse,
    HealthResponse,
    ImagePrediction,
    ModelInfo,
    PredictResponse,
    PreprocessingInfo,
    ScoredLabel,
)

# The client's names for the wire bodies, as README.md and docs/ use them.
Prediction = PredictResponse  # POST /predict: ``results``, one per image, in the order sent
ImageResult = ImagePrediction  # one image's answer: ``top``, ``predictions``, ``abstained``, ...
Health = HealthResponse  # GET /health/ready; ``ready`` is False while warming up, draining or stuck
Preprocessing = PreprocessingInfo  # ModelInfo.preprocessing
HeatMap = ExplainResponse  # POST /explain?format=json: ``explained`` and ``rows``, the map itself


@dataclass(frozen=True)
class ExplanationImage:
    """A ``POST /explain`` answer: the class explained and its Grad-CAM heat map over the model's
    input crop, as a PNG overlay (``input_size`` square). The class comes in ``X-Explained-*``
    headers, so this one answer is the client's own type."""

    explained: ScoredLabel
    png: bytes


Explanation = ExplanationImage  # its name in the client's API


class ResnetClientError(Exception):
    """Base of the client's errors."""


class ResnetServeError(ResnetClientError):
    """The server answered with a non-2xx status (or with a body that is not its API)."""

    def __init__(self, status: int, code: str, message: str, request_id: str | None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id


class ResnetConnectionError(ResnetClientError):
    """No answer: the server is unreachable, the connection broke, or the timeout passed."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot reach {url}: {reason}")
        self.url = url
        self.reason = reason


__all__ = [
    "Explanation",
    "ExplanationImage",
    "Health",
    "HeatMap",
    "ImageResult",
    "ModelInfo",
    "Prediction",
    "Preprocessing",
    "ResnetClientError",
    "ResnetConnectionError",
    "ResnetServeError",
    "ScoredLabel",
]
