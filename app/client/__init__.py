"""A typed Python client for resnet-serve, on httpx and pydantic only (no torch, PIL or numpy): it
parses answers with the server's own wire models (``app.wire``).

from app.client import ResnetClient

with ResnetClient("http://127.0.0.1:8000") as client:
    for result in client.predict(["cat.jpg", "dog.png"], top_k=3).results:
        print(result.top.label, result.top.score)
    Path("cat-heat-map.png").write_bytes(client.explain("cat.jpg").png)
"""

from app.client.client import DEFAULT_URL, AsyncResnetClient, ImageInput, ResnetClient, Target
from app.client.models import (
    Explanation,
    Health,
    HeatMap,
    ImageResult,
    ModelInfo,
    Prediction,
    Preprocessing,
    ResnetClientError,
    ResnetConnectionError,
    ResnetServeError,
    ScoredLabel,
)

__all__ = [
    "DEFAULT_URL",
    "AsyncResnetClient",
    "Explanation",
    "Health",
    "HeatMap",
    "ImageInput",
    "ImageResult",
    "ModelInfo",
    "Prediction",
    "Preprocessing",
    "ResnetClient",
    "ResnetClientError",
    "ResnetConnectionError",
    "ResnetServeError",
    "ScoredLabel",
    "Target",
]
