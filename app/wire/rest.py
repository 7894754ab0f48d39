"""The JSON bodies of the REST API, declared once: the server answers with them (and documents them
in /docs), the client parses the answers with them. The Open Inference Protocol's are in
``app.wire.open_inference``.

Each body carries an example with the bundled demo model's values, so /docs shows a real answer.
Bodies are frozen, as values a caller receives, and most of their sequences tuples (whose JSON schema
is an array, as a list's). A model's docstring is its description in /docs: written for API users.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.dataclasses import dataclass


# ScoredLabel and ImagePrediction are pydantic dataclasses, not BaseModels: validated alike, but
# callers also build them positionally and read them with ``dataclasses.asdict`` (the offline CLI).
@dataclass(frozen=True)
class ScoredLabel:
    label: str
    index: int = Field(description="Position of the label in the model's label list.")
    score: float = Field(description="Softmax probability (calibrated when the bundle is).")


# Required in the answer's schema all the same: the server always sends ``abstained``.
@dataclass(frozen=True, config=ConfigDict(json_schema_serialization_defaults_required=True))
class ImagePrediction:
    """One image's answer: its top-k labels (highest first) and how it was batched."""

    predictions: Sequence[ScoredLabel] = Field(description="Top-k classes, highest score first.")
    batch_size: int = Field(description="Size of the forward pass this image ran in.")
    queue_ms: float = Field(description="Time the image waited for a batch.")
    inference_ms: float = Field(description="Forward-pass time of that batch.")
    abstained: bool = Field(
        False,
        description="Too unsure to act on (likely an image of none of the model's classes): "
        "the top score is below the abstain threshold, or the top class is one of the "
        "abstain labels.",
    )

    @property
    def top(self) -> ScoredLabel:
        """The highest-scored label."""
        return self.predictions[0]


class PredictResponse(BaseModel):
    """A ``POST /predict`` answer: one ``ImagePrediction`` per image, in the order sent."""

    model_config = ConfigDict(
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "model": "demo",
                    "version": "1",
                    "request_id": "2d46ee258f3745c7ab34954521433354",
                    "results": [
                        {
                            "predictions": [
                                {"label": "star", "index": 6, "score": 0.9959258},
                                {"label": "clutter", "index": 2, "score": 0.0027505},
                                {"label": "checkerboard", "index": 0, "score": 0.0003911},
                            ],
                            "batch_size": 4,
                            "queue_ms": 1.204,
                            "inference_ms": 3.87,
                            "abstained": False,
                        }
                    ],
                    "preprocess_ms": 1.62,
                    "total_ms": 7.413,
                }
            ]
        },
    )

    model: str = Field(description="The model that answered, by the name it is served under.")
    version: str = Field("1", description="Its version that answered.")
    request_id: str
    results: tuple[ImagePrediction, ...] = Field(description="One entry per image, in input order.")
    preprocess_ms: float
    total_ms: float


class LivenessResponse(BaseModel):
    """A ``GET /health/live`` answer."""

    model_config = ConfigDict(
        frozen=True,
        json_schema_extra={
            "examples": [
                {"status": "alive"},
                {
                    "status": "stuck",
                    "reason": "a batch has been running for 95s, beyond the request deadline",
                },
            ]
        },
    )

    status: str = Field(description="alive; or failed, or stuck (with a 503).")
    reason: str | None = Field(None, description="Why it is not alive.")


class HealthResponse(BaseModel):
    """A ``GET /health/ready`` answer: the server's phase, or ``stuck`` when a batch has outlived
    every deadline, and what is served on what; 200 when ready, else 503."""

    # What every protocol's health routes answer from (``app.serving.health``).

    model_config = ConfigDict(
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "status": "ready",
                    "reason": "",
                    "model": "demo",
                    "models": ["demo"],
                    "arch": "resnet18",
                    "device": "cuda:0",
                    "precision": "bf16",
                    "max_batch_size": 32,
                    "queue_depth": 3,
                    "saturation": 0.012,
                    "uptime_s": 3605.218,
                },
                {
                    "status": "starting",
                    "reason": "warming up",
                    "model": "demo",
                    "models": ["demo"],
                    "arch": "resnet18",
                    "device": "cuda:0",
                    "precision": "bf16",
                    "max_batch_size": 32,
                    "queue_depth": 0,
                    "saturation": 0.0,
                    "uptime_s": 4.87,
                },
            ]
        },
    )

    status: str = Field(
        description="starting, ready, unloaded (every model, through the repository API), "
        "draining, failed or stuck."
    )
    reason: str = ""
    model: str | None = Field(
        None, description="The first model served (by name); arch to max_batch_size are its."
    )
    models: list[str] = Field(default_factory=list, description="Every model served now.")
    arch: str | None = None
    device: str | None = None
    precision: str | None = None
    max_batch_size: int
    queue_depth: int = Field(description="Images waiting for a batch, of every model.")
    saturation: float = Field(
        description="Fill of the fullest admission bound, 0..1; at 1 new requests get 503."
    )
    uptime_s: float

    @property
    def live(self) -> bool:
        """False when only a restart helps: start-up failed for good, or inference is hung."""
        return self.status not in ("failed", "stuck")

    @property
    def ready(self) -> bool:
        """True when the server takes traffic (the route answers 200)."""
        return self.status == "ready"


class ErrorBody(BaseModel):
    model_config = ConfigDict(frozen=True)

    code: str
    message: str


class ErrorResponse(BaseModel):
    """Every error outside /v2: ``code`` for programs, ``message`` for people."""

    model_config = ConfigDict(
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "error": {
                        "code": "invalid_image",
                        "message": "file[0] (cat.txt): not a recognised image, or not one of the "
                        "supported formats (JPEG, PNG, WEBP, BMP, GIF, TIFF)",
                    }
                }
            ]
        },
    )

    error: ErrorBody


class PreprocessingInfo(BaseModel):
    """How an image becomes model input, with the names ``model.json`` uses: resize the shorter
    side, centre-crop, normalise with ``mean`` and ``std``."""

    model_config = ConfigDict(frozen=True)

    resize_size: int = Field(description="The shorter side is resized to this many pixels.")
    input_size: int = Field(description="Then centre-cropped to this square (the crop).")
    interpolation: str = Field(description="Resampling filter of the resize.")
    mean: tuple[float, float, float] = Field(description="Per-channel mean subtracted (RGB, 0..1).")
    std: tuple[float, float, float] = Field(description="Per-channel divisor (RGB, 0..1).")


class ModelInfo(BaseModel):
    """A ``GET /model`` answer: what is served, so a caller can check labels and input size."""

    model_config = ConfigDict(
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "name": "demo",
                    "version": "1",
                    "models": ["demo"],
                    "arch": "resnet18",
                    "num_classes": 9,
                    "labels": [
                        "checkerboard",
                        "circle",
                        "clutter",
                        "cross",
                        "ring",
                        "square",
                        "star",
                        "stripes",
                        "triangle",
                    ],
                    "input_size": 112,
                    "preprocessing": {
                        "resize_size": 112,
                        "input_size": 112,
                        "interpolation": "bilinear",
                        "mean": [0.485, 0.456, 0.406],
                        "std": [0.229, 0.224, 0.225],
                    },
                    "weights_sha256": "7bb0cf7922c6ce7725c76b86bd800da4"
                    "a302e94a8ebfcab3db5e314bd8e24467",
                    "provenance": {
                        "pretrained": "bundle: runs/demo-base (demo)",
                        "dataset": "runs/demo-data",
                        "epochs": 10,
                        "best_epoch": 9,
                        "metrics": {"val_accuracy": 0.9911, "val_loss": 0.1061},
                    },
                    "temperature": 0.4717,
                    "abstain_threshold": 0.98306,
                    "abstain_labels": ["clutter"],
                }
            ]
        },
    )

    name: str = Field(description="The name it is served under (?model= on /predict).")
    version: str = Field(
        "1",
        description="The latest version served: 1 for a plain bundle, else its folder's number.",
    )
    models: tuple[str, ...] = Field(
        (),
        description="Every model the server knows, by name, unloaded ones too; GET /model?model= "
        "describes one.",
    )
    arch: str
    num_classes: int
    labels: tuple[str, ...] = Field(
        description="Class labels in output order: `index` points here."
    )
    input_size: int = Field(description="Side of the square RGB input the model sees.")
    preprocessing: PreprocessingInfo
    weights_sha256: str | None = Field(None, description="sha256 of the bundle's weights file.")
    provenance: dict[str, Any] = Field(
        description="Where the weights came from: pretraining, data set, epochs, metrics, ..."
    )
    temperature: float = Field(
        1.0, description="Softmax temperature of the scores (1: the bundle is not calibrated)."
    )
    abstain_threshold: float = Field(
        0.0, description="Top score below which an answer is `abstained` (0: never)."
    )
    abstain_labels: tuple[str, ...] = Field(
        default_factory=tuple,
        description="Labels whose answers are `abstained` whatever their score.",
    )


class ExplainResponse(BaseModel):
    """A ``POST /explain?format=json`` answer: the class explained and its Grad-CAM map, rows top to
    bottom, values 0..1, over the model's input crop."""

    model_config = ConfigDict(
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "label": "star",
                    "index": 6,
                    "score": 0.9959258,
                    "width": 112,
                    "height": 112,
                    # Two of the 112 rows, four of their 112 values each: a real map is 112 x 112.
                    "map": [[0.0, 0.0012, 0.0031, 0.0057], [0.0008, 0.4127, 0.8621, 0.9655]],
                }
            ]
        },
    )

    label: str = Field(description="The class explained.")
    index: int = Field(description="Its position in the model's label list.")
    score: float = Field(description="Its softmax probability.")
    width: int = Field(description="Width of the map: the model's input size.")
    height: int = Field(description="Height of the map: the model's input size.")
    map: tuple[tuple[float, ...], ...] = Field(
        description="Grad-CAM, rows top to bottom, 0..1, over the centre crop the model saw."
    )

    @property
    def explained(self) -> ScoredLabel:
        return ScoredLabel(self.label, self.index, self.score)

    @property
    def rows(self) -> tuple[tuple[float, ...], ...]:
        """``map``, by the name the client has always given it."""
        return self.map
