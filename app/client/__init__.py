"""A typed Python client for resnet-serve, on httpx only (no torch, PIL or numpy).

from app.client import ResnetClient

with ResnetClient("http://127.0.0.1:8000") as client:
    for result in client.predict(["cat.jpg", "dog.png"], top_k=3).results:
        print(result.top.label, result.top.score)
"""

from app.client.client import DEFAULT_URL, AsyncResnetClient, ImageInput, ResnetClient
from app.client.models import (
    Health,
    ImageResult,
    Prediction,
    ResnetClientError,
    ResnetConnectionError,
    ResnetServeError,
    ScoredLabel,
)

__all__ = [
    "DEFAULT_URL",
    "AsyncResnetClient",
    "Health",
    "ImageInput",
    "ImageResult",
    "Prediction",
    "ResnetClient",
    "ResnetClientError",
    "ResnetConnectionError",
    "ResnetServeError",
    "ScoredLabel",
]
