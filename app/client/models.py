"""What the server answers, as frozen dataclasses: the client needs no pydantic, torch or PIL."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote


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


@dataclass(frozen=True)
class Preprocessing:
    """How the server turns an image into model input: resize the shorter side, centre-crop,
    normalise with ``mean`` and ``std`` (RGB, 0..1)."""

    resize_size: int
    input_size: int
    interpolation: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


@dataclass(frozen=True)
class ModelInfo:
    """A ``GET /model`` answer: what is served, so a caller can check labels and input size."""

    name: str
    arch: str
    num_classes: int
    labels: tuple[str, ...]  # in output order: a ``ScoredLabel.index`` points here
    input_size: int
    preprocessing: Preprocessing
    weights_sha256: str | None
    provenance: dict[str, Any]  # pretraining, data set, epochs, metrics, ... as the bundle says
    temperature: float
    abstain_threshold: float
    abstain_labels: tuple[str, ...]

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> ModelInfo:
        spec = body["preprocessing"]
        return cls(
            name=body["name"],
            arch=body["arch"],
            num_classes=body["num_classes"],
            labels=tuple(body["labels"]),
            input_size=body["input_size"],
            preprocessing=Preprocessing(
                resize_size=spec["resize_size"],
                input_size=spec["input_size"],
                interpolation=spec["interpolation"],
                mean=tuple(spec["mean"]),
                std=tuple(spec["std"]),
            ),
            weights_sha256=body.get("weights_sha256"),
            provenance=body["provenance"],
            temperature=body.get("temperature", 1.0),
            abstain_threshold=body.get("abstain_threshold", 0.0),
            abstain_labels=tuple(body.get("abstain_labels", ())),
        )


@dataclass(frozen=True)
class Explanation:
    """A ``POST /explain`` answer: the class explained and its Grad-CAM heat map over the model's
    input crop, as a PNG overlay (``input_size`` square)."""

    explained: ScoredLabel
    png: bytes

    @classmethod
    def from_headers(cls, headers: Mapping[str, str], png: bytes) -> Explanation:
        # The label is percent-encoded UTF-8: header values carry ASCII only.
        explained = ScoredLabel(
            label=unquote(headers["x-explained-label"]),
            index=int(headers["x-explained-index"]),
            score=float(headers["x-explained-score"]),
        )
        return cls(explained, png)


@dataclass(frozen=True)
class HeatMap:
    """A ``POST /explain?format=json`` answer: the Grad-CAM map itself, for a caller that draws
    or measures it; rows top to bottom, values 0..1, ``input_size`` square."""

    explained: ScoredLabel
    rows: tuple[tuple[float, ...], ...]

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> HeatMap:
        explained = ScoredLabel(label=body["label"], index=body["index"], score=body["score"])
        return cls(explained, tuple(tuple(row) for row in body["map"]))


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
