"""The served model and its preprocessing without the service around them, for the comparisons.

The in-process ceiling and both peer servers classify through this one class. It loads the bundle
exactly as ``resnet-serve serve`` does (``app.serving.builder.load_runner`` with ``Settings`` read from the same
``RESNET_SERVE_*`` environment the harness gives the service), warms it up the same way (which
captures the CUDA graphs where the service would), and decodes and preprocesses with
the service's own ``UploadDecoder``. Only the serving around the model differs between the
systems, never the model, its weights, its precision, its device handling or its preprocessing.
"""

from __future__ import annotations

from pathlib import Path

import torch

from app.model.preprocessing import UploadDecoder
from app.serving.builder import load_runner
from app.settings import Settings

TOP_K = 5


class Classifier:
    """Bytes -> tensor (``prepare``) and tensors -> probabilities (``predict``), as the service does.

    The forward passes run on the runner's own inference thread, where the model was loaded and its
    thread count set, exactly as in the service.
    """

    def __init__(self, model_dir: Path, device: str, threads: int) -> None:
        self.settings = Settings(model_dir=model_dir, device=device, torch_threads=threads)
        self.runner = load_runner(self.settings)
        # Decodes and preprocesses one upload exactly as the service does (raises on bad bytes).
        self.prepare = UploadDecoder(
            self.runner.bundle.manifest.preprocessing,
            self.settings.max_image_pixels,
            self.settings.jpeg_draft,
        )

    async def warm_up(self) -> None:
        """Every batch size once, and the CUDA graphs captured, as the service's start-up does."""
        await self.runner.warm_up()

    def predict(self, images: list[torch.Tensor]) -> list[torch.Tensor]:
        """One forward pass over ``images``, as the service's runner runs a batch."""
        return self.runner.predict_blocking(images)

    def top_k(self, probabilities: torch.Tensor) -> list[dict[str, str | int | float]]:
        """The answer both peers send: the five most probable classes as JSON-ready dicts."""
        return [
            {"label": c.label, "index": c.index, "score": c.score}
            for c in self.runner.top_k(probabilities, TOP_K)
        ]
