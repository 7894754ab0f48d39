"""``resnet-serve predict --bundle``: classify image files on this machine, with no server.

The service ``serve`` runs, built the same way (``build_service``), without HTTP: one call per
image, as the client sends one request per image, so the batcher merges them and one bad file fails
only its own line. It abstains below the bundle's threshold and on the bundle's abstain labels, as
a server with no ``ABSTAIN_THRESHOLD`` or ``ABSTAIN_LABELS`` setting does, and answers as the
client's ``Outcome`` objects so that the command prints and writes them exactly as it does a
server's answers. Imported only when ``--bundle`` is given: it loads torch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from app.cli.prediction import Outcome
from app.edge.http_errors import as_api_error
from app.model.preprocessing import DATASET_MAX_PIXELS
from app.serving.builder import build_service
from app.serving.pipeline import RejectedImageError
from app.serving.served_model import DEFAULT_TOP_K
from app.serving.service import InferenceService
from app.settings import Settings

MAX_BATCH_SIZE = Settings.model_fields["max_batch_size"].default
# Files in the service at once: two batches' worth keeps the model busy while the next is decoded.
# The limits below are sized for that many of the largest files, so admission never refuses one:
# local files are the user's own, held to a dataset's pixel limit, not to a public endpoint's.
MAX_FILE_BYTES = 1024**3
TIMEOUT_S = 3600.0


def classify_files(
    paths: Sequence[Path], bundle: Path, top_k: int | None, device: str = "auto"
) -> list[Outcome]:
    """Every path's outcome, in order; an unreadable or undecodable file fails its own line only.

    Raises ``BundleError`` or ``DeviceError`` when the bundle cannot be served here.
    """
    # Batches of at most as many images as there are files: warm-up runs every batch size up to
    # the largest, and a few files should not pay for all of them.
    batch = max(1, min(MAX_BATCH_SIZE, len(paths)))
    in_service = 2 * batch
    settings = Settings(
        model_dir=bundle,
        device=device,
        precision="auto",
        gpu_decode=False,
        workers=1,
        max_batch_size=batch,
        abstain_threshold=None,
        abstain_labels=None,
        max_images_per_request=1,
        max_queue_size=in_service,
        max_requests_in_flight=in_service,
        request_timeout_s=TIMEOUT_S,
        max_body_bytes=MAX_FILE_BYTES,
        max_body_bytes_in_flight=in_service * MAX_FILE_BYTES,
        max_image_pixels=DATASET_MAX_PIXELS,
        max_request_pixels=DATASET_MAX_PIXELS,
        max_decode_pixels=in_service * DATASET_MAX_PIXELS,
        # This bundle, whatever repository the environment names for a server.
        model_repository=None,
        storage_uri=None,
    )
    return asyncio.run(_classify_all(build_service(settings), paths, top_k, in_service))


async def _classify_all(
    service: InferenceService, paths: Sequence[Path], top_k: int | None, in_service: int
) -> list[Outcome]:
    k = min(top_k or DEFAULT_TOP_K, service.served(None).manifest.num_classes)
    admitted = asyncio.Semaphore(in_service)

    async def classify(path: Path) -> Outcome:
        async with admitted:
            try:
                data = path.read_bytes()
            except OSError as exc:
                return Outcome(path, code="unreadable", message=exc.strerror or str(exc))
            try:
                with service.begin(str(len(data))) as call:
                    (result,) = await call.classify_encoded([data], k)
            except RejectedImageError as exc:
                return Outcome(path, code="invalid_image", message=str(exc.cause))
            except Exception as exc:  # what a server would answer for this file, on its line
                error = as_api_error(exc, name_of=lambda _: path.name)
                return Outcome(path, code=error.code, message=error.message)
        return Outcome(path, result.as_prediction())

    try:
        await service.start()
        return await asyncio.gather(*(classify(path) for path in paths))
    finally:
        await service.stop()
