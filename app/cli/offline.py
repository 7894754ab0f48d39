"""``resnet-serve predict --bundle``: classify image files on this machine, with no server.

The same decoding and model path as the service (``UploadDecoder``, ``ModelRunner``), in batches,
answered as the client's ``Outcome`` objects (abstaining below the bundle's threshold, as a server
with no ``ABSTAIN_THRESHOLD`` setting does) so that the command prints and writes them exactly as
it does a server's answers. Imported only when ``--bundle`` is given: it loads torch.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import torch

from app.cli.predict import Outcome
from app.client.models import ImageResult, ScoredLabel
from app.model.preprocessing import (
    DATASET_MAX_PIXELS,
    ImageDecodeError,
    ImageTooLargeError,
    UploadDecoder,
)
from app.serving.runner import ModelRunner, RunnerOptions, abstains

BATCH_SIZE = 32


def classify_files(
    paths: Sequence[Path], bundle: Path, top_k: int | None, device: str = "auto"
) -> list[Outcome]:
    """Every path's outcome, in order; an unreadable or undecodable file fails its own line only.

    Raises ``BundleError`` or ``DeviceError`` when the bundle cannot be served here.
    """
    runner = ModelRunner.load(str(bundle), device, "auto", RunnerOptions(max_batch_size=BATCH_SIZE))
    try:
        decode = UploadDecoder(runner.bundle.manifest.preprocessing, DATASET_MAX_PIXELS)
        k = min(top_k or 5, len(runner.labels))
        threshold = runner.bundle.manifest.abstain_threshold
        outcomes: list[Outcome] = []
        for start in range(0, len(paths), BATCH_SIZE):
            batch = paths[start : start + BATCH_SIZE]
            outcomes += _classify_batch(runner, decode, batch, k, threshold)
        return outcomes
    finally:
        runner.close()


def _classify_batch(
    runner: ModelRunner, decode: UploadDecoder, paths: Sequence[Path], k: int, threshold: float
) -> list[Outcome]:
    decoded: dict[int, torch.Tensor] = {}
    failures: dict[int, Outcome] = {}
    for index, path in enumerate(paths):
        try:
            decoded[index] = decode(path.read_bytes())
        except OSError as exc:
            failures[index] = Outcome(path, code="unreadable", message=exc.strerror or str(exc))
        except (ImageDecodeError, ImageTooLargeError) as exc:
            failures[index] = Outcome(path, code="invalid_image", message=str(exc))
    started = time.perf_counter()
    probabilities = runner.predict_blocking(list(decoded.values())) if decoded else []
    inference_ms = round((time.perf_counter() - started) * 1000, 3)
    results = dict(zip(decoded, probabilities, strict=True))
    outcomes = []
    for index, path in enumerate(paths):
        if index in failures:
            outcomes.append(failures[index])
            continue
        top = tuple(ScoredLabel(c.label, c.index, c.score) for c in runner.top_k(results[index], k))
        abstained = abstains(results[index], threshold)
        outcomes.append(Outcome(path, ImageResult(top, len(decoded), 0.0, inference_ms, abstained)))
    return outcomes
