"""What the server answers, as frozen dataclasses: the client needs no pydantic, torch or PIL."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ScoredLabel:
    label: str
    index: int
    score: float


@dataclass(frozen=True)
class ImageResult:
    """One image's answer: its top-k labels (highest first) and how it was batched."""

    predictions: tuple[ScoredLabel, ...]
    batch_size: int
    queue_ms: float
    inference_ms: float
    abstained: bool = (
        False  # the server abstains: top score below its threshold or an abstain label
    )

    @property
    def top(self) -> ScoredLabel:
        return self.predictions[0]


@dataclass(frozen=True)
class Prediction:
    """A ``POST /predict`` answer: one ``ImageResult`` per image, in the order sent."""

    model: str
    request_id: str
    results: tuple[ImageResult, ...]
    preprocess_ms: float
    total_ms: float

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Prediction:
        results = tuple(
            ImageResult(
                predictions=tuple(ScoredLabel(**p) for p in r["predictions"]),
                batch_size=r["batch_size"],
                queue_ms=r["queue_ms"],
                inference_ms=r["inference_ms"],
                abstained=r.get("abstained", False),  # older servers do not send it
            )
            for r in body["results"]
        )
        return cls(
            model=body["model"],
            request_id=body["request_id"],
            results=results,
            preprocess_ms=body["preprocess_ms"],
            total_ms=body["total_ms"],
        )


@dataclass(frozen=True)
class Health:
    """A ``GET /health/ready`` answer; ``ready`` is False while warming up, draining or stuck."""

    ready: bool
    status: str
    reason: str
    model: str | None
    arch: str | None
    device: str | None
    precision: str | None
    max_batch_size: int
    queue_depth: int
    saturation: float
    uptime_s: float

    @classmethod
    def from_json(cls, body: dict[str, Any], ready: bool) -> Health:
        return cls(
            ready=ready,
            status=body["status"],
            reason=body.get("reason", ""),
            model=body.get("model"),
            arch=body.get("arch"),
            device=body.get("device"),
            precision=body.get("precision"),
            max_batch_size=body["max_batch_size"],
            queue_depth=body["queue_depth"],
            saturation=body["saturation"],
            uptime_s=body["uptime_s"],
        )


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
