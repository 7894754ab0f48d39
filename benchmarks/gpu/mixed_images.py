"""Uploads for the correctness step: the demo model's shapes, in every form the decoders treat apart.

Four kinds, in turn, so any count holds all of them:

- ``jpeg-500x375``: photo-sized; Pillow's draft mode decodes it at 1/2 scale (the demo resizes
  to 112 px), nvJPEG at full size;
- ``jpeg-4000x3000``: camera-sized (12 MP); Pillow decodes it at 1/8 scale, nvJPEG at full size,
  under ``GPU_DECODE_MAX_PIXELS``;
- ``png-500x375``: Pillow on every path;
- ``jpeg-exif-rotated``: a portrait stored on its side with EXIF orientation 6, which Pillow turns
  upright and nvJPEG does not (the service sends such JPEGs to Pillow).

Each image shows one of the demo's classes, drawn with seeds training never used, so the CPU path
answers them confidently and correctly: a mismatch is then the device's doing, not a near tie.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from app.training.demo_data import CLASSES, render_image

KINDS = ("jpeg-500x375", "jpeg-4000x3000", "png-500x375", "jpeg-exif-rotated")
PHOTO = (500, 375)
CAMERA_SCALE = 8  # 500x375 drawn, then enlarged to 4000x3000: drawing at full size takes ~2 s
SEED = 90_000  # training drew from [seed, class, index] sequences, the precision check from 50_000
QUALITY = 90
EXIF_ORIENTATION = 0x0112
ROTATED_90_CW = 6  # "turn 90 degrees clockwise to view"


@dataclass(frozen=True)
class Upload:
    """One image file to send: its name (index, kind and true class), kind, class and bytes."""

    name: str
    kind: str
    label: str
    data: bytes


def _encode(image: Image.Image, kind: str) -> bytes:
    buffer = io.BytesIO()
    if kind == "png-500x375":
        image.save(buffer, "PNG")
    elif kind == "jpeg-exif-rotated":
        # Stored turned 90 degrees counter-clockwise; orientation 6 turns it back for the viewer.
        exif = Image.Exif()
        exif[EXIF_ORIENTATION] = ROTATED_90_CW
        image.transpose(Image.Transpose.ROTATE_90).save(buffer, "JPEG", quality=QUALITY, exif=exif)
    else:
        image.save(buffer, "JPEG", quality=QUALITY)
    return buffer.getvalue()


def upright(kind: str, label: str, rng: np.random.Generator) -> Image.Image:
    """The image as a viewer sees it, before encoding."""
    if kind == "jpeg-exif-rotated":
        return render_image(label, rng, PHOTO[::-1])  # a portrait
    image = render_image(label, rng, PHOTO)
    if kind == "jpeg-4000x3000":
        size = (PHOTO[0] * CAMERA_SCALE, PHOTO[1] * CAMERA_SCALE)
        return image.resize(size, Image.Resampling.BICUBIC)
    return image


def mixed_uploads(count: int) -> list[Upload]:
    """``count`` uploads, the kinds and the classes in turn; the same bytes for the same count."""
    uploads = []
    for index in range(count):
        # The class steps on by one more each time the kinds come round: every kind meets every
        # class in 32 images, and 8 images hold 8 classes.
        kind = KINDS[index % len(KINDS)]
        label = CLASSES[(index + index // len(KINDS)) % len(CLASSES)]
        image = upright(kind, label, np.random.default_rng(SEED + index))
        suffix = "png" if kind.startswith("png") else "jpg"
        name = f"{index:03d}-{kind}-{label}.{suffix}"
        uploads.append(Upload(name, kind, label, _encode(image, kind)))
    return uploads


def write_uploads(uploads: list[Upload], folder: Path) -> list[Path]:
    """Each upload as a file in ``folder`` (the CPU path and the client read files)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / upload.name for upload in uploads]
    for path, upload in zip(paths, uploads, strict=True):
        path.write_bytes(upload.data)
    return paths
