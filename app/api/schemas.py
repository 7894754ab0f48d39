"""Response bodies of the public API (they also document it in /docs)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ScoredLabel(BaseModel):
    label: str
    index: int = Field(description="Position of the label in the model's label list.")
    score: float = Field(description="Softmax probability (calibrated when the bundle is).")


class ImagePrediction(BaseModel):
    predictions: list[ScoredLabel] = Field(description="Top-k classes, highest score first.")
    batch_size: int = Field(description="Size of the forward pass this image ran in.")
    queue_ms: float = Field(description="Time the image waited for a batch.")
    inference_ms: float = Field(description="Forward-pass time of that batch.")
    abstained: bool = Field(
        description="Too unsure to act on (likely an image of none of the model's classes): "
        "the top score is below the abstain threshold, or the top class is one of the "
        "abstain labels."
    )


class PredictResponse(BaseModel):
    model: str
    request_id: str
    results: list[ImagePrediction] = Field(description="One entry per image, in input order.")
    preprocess_ms: float
    total_ms: float


class LivenessResponse(BaseModel):
    status: str = Field(description="alive; or failed, or stuck (with a 503).")
    reason: str | None = Field(None, description="Why it is not alive.")


class HealthResponse(BaseModel):
    status: str = Field(description="starting, ready, draining, failed or stuck.")
    reason: str = ""
    model: str | None = None
    arch: str | None = None
    device: str | None = None
    precision: str | None = None
    max_batch_size: int
    queue_depth: int
    saturation: float = Field(
        description="Fill of the fullest admission bound, 0..1; at 1 new requests get 503."
    )
    uptime_s: float


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


class PreprocessingInfo(BaseModel):
    """How an image becomes model input, with the names ``model.json`` uses."""

    resize_size: int = Field(description="The shorter side is resized to this many pixels.")
    input_size: int = Field(description="Then centre-cropped to this square (the crop).")
    interpolation: str = Field(description="Resampling filter of the resize.")
    mean: tuple[float, float, float] = Field(description="Per-channel mean subtracted (RGB, 0..1).")
    std: tuple[float, float, float] = Field(description="Per-channel divisor (RGB, 0..1).")


class ModelInfo(BaseModel):
    name: str
    arch: str
    num_classes: int
    labels: list[str] = Field(description="Class labels in output order: `index` points here.")
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
    abstain_labels: list[str] = Field(
        default_factory=list,
        description="Labels whose answers are `abstained` whatever their score.",
    )
