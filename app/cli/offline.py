"""``resnet-serve predict --bundle``: classify image files on this machine, with no server.

The service ``serve`` runs, built the same way (``build_service``), without HTTP: one call per
image, as the client sends one request per image, so the batcher merges them and one bad file fails
only its own line. It abstains below the bundle's threshold, as a server with no
``ABSTAIN_THRESHOLD`` setting does, and answers as the client's ``Outcome`` objects so that the
command prints and writes them exactly as it does a server's answers. Imported only when
``--bundle`` is given: it loads torch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from app.cli.prediction import Outcome
from app.model.preprocessing import DATASET_MAX_PIXELS
from app.serving.builder import build_service
from app.serving.pipeline import RejectedImageError
from app.serving.service import InferenceService
from app.settings import Settings

# Batches of up to 32 images, or of as many as there are files: warm-up runs every batch size up to
# the largest, and a few files should not pay for 32 sizes.
MAX_BATCH_SIZE = 32


def classify_files(
    paths: Sequence[Path], bundle: Path, top_k: int | None, device: str = "auto"
) -> list[Outcome]:
    """Every path's outcome, in order; an unreadable or undecodable file fails its own line only.

    Raises ``BundleError`` or ``DeviceError`` when the bundle cannot be served here.
    """
    # Local files are the user's own: the pixel limits of a dataset, not of a public endpoint.
    settings = Settings(
        model_dir=bundle,
        device=device,
        max_batch_size=max(1, min(MAX_BATCH_SIZE, len(paths))),
        abstain_threshold=None,
        abstain_labels="",
        max_image_pixels=DATASET_MAX_PIXELS,
        max_request_pixels=DATASET_MAX_PIXELS,
        max_decode_pixels=DATASET_MAX_PIXELS,
    )
    return asyncio.run(_classify_all(build_service(settings), paths, top_k))


async def _classify_all(
    service: InferenceService, paths: Sequence[Path], top_k: int | None
) -> list[Outcome]:
    k = min(top_k or 5, service.manifest.num_classes)
    admitted = asyncio.Semaphore(service.settings.max_requests_in_flight)

    async def classify(path: Path) -> Outcome:
        async with admitted:
            try:
                data = path.read_bytes()
            except OSError as exc:
                return Outcome(path, code="unreadable", message=exc.strerror or str(exc))
            try:
                with service.begin(None) as call:
                    (result,) = await call.classify_encoded([data], k)
            except RejectedImageError as exc:
                return Outcome(path, code="invalid_image", message=str(exc.cause))
        return Outcome(path, result.as_prediction())

    try:
        await service.start()
        return await asyncio.gather(*(classify(path) for path in paths))
    finally:
        await service.stop()
