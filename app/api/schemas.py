"""Response bodies of the public API (they also document it in /docs)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ScoredLabel(BaseModel):
    label: str
    index: int = Field(description="Position of the label in the model's label list.")
    score: float = Field(description="Softmax probability.")


class ImagePrediction(BaseModel):
    predictions: list[ScoredLabel] = Field(description="Top-k classes, highest score first.")
    batch_size: int = Field(description="Size of the forward pass this image ran in.")
    queue_ms: float = Field(description="Time the image waited for a batch.")
    inference_ms: float = Field(description="Forward-pass time of that batch.")


class PredictResponse(BaseModel):
    model: str
    request_id: str
    results: list[ImagePrediction] = Field(description="One entry per image, in input order.")
    preprocess_ms: float
    total_ms: float


class HealthResponse(BaseModel):
    status: str
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
