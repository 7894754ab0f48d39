"""Bodies of the public API, which also document it in /docs: /predict's, /explain's error shape,
the operations routes' and /model's (the Open Inference Protocol's are in ``v2_schemas``).

Each response carries an example with the bundled demo model's values, so /docs shows a real answer.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


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
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "model": "demo",
                    "request_id": "2d46ee258f3745c7ab34954521433354",
                    "results": [
                        {
                            "predictions": [
                                {"label": "star", "index": 5, "score": 0.9999976},
                                {"label": "cross", "index": 2, "score": 0.0000018},
                                {"label": "triangle", "index": 7, "score": 0.0000005},
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
        }
    )

    model: str
    request_id: str
    results: list[ImagePrediction] = Field(description="One entry per image, in input order.")
    preprocess_ms: float
    total_ms: float


class LivenessResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"status": "alive"},
                {
                    "status": "stuck",
                    "reason": "a batch has been running for 95s, beyond the request deadline",
                },
            ]
        }
    )

    status: str = Field(description="alive; or failed, or stuck (with a 503).")
    reason: str | None = Field(None, description="Why it is not alive.")


class HealthResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "status": "ready",
                    "reason": "",
                    "model": "demo",
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
                    "arch": "resnet18",
                    "device": "cuda:0",
                    "precision": "bf16",
                    "max_batch_size": 32,
                    "queue_depth": 0,
                    "saturation": 0.0,
                    "uptime_s": 4.87,
                },
            ]
        }
    )

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
    model_config = ConfigDict(
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
        }
    )

    error: ErrorBody


class PreprocessingInfo(BaseModel):
    """How an image becomes model input, with the names ``model.json`` uses."""

    resize_size: int = Field(description="The shorter side is resized to this many pixels.")
    input_size: int = Field(description="Then centre-cropped to this square (the crop).")
    interpolation: str = Field(description="Resampling filter of the resize.")
    mean: tuple[float, float, float] = Field(description="Per-channel mean subtracted (RGB, 0..1).")
    std: tuple[float, float, float] = Field(description="Per-channel divisor (RGB, 0..1).")


class ModelInfo(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "demo",
                    "arch": "resnet18",
                    "num_classes": 8,
                    "labels": [
                        "checkerboard",
                        "circle",
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
                    "weights_sha256": "9d65ebc7600c973ce16e628fd84f1ef0"
                    "d53bc15a60bf615eb117ecd4d4e3a6aa",
                    "provenance": {
                        "pretrained": "none",
                        "dataset": "runs/demo-data",
                        "epochs": 30,
                        "best_epoch": 28,
                        "metrics": {"val_accuracy": 0.9975, "val_loss": 0.1012},
                    },
                    "temperature": 0.2515,
                    "abstain_threshold": 0.99993,
                    "abstain_labels": [],
                }
            ]
        }
    )

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
