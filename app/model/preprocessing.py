"""Bytes -> checked RGB image -> normalised tensor, shared by training and serving.

Decoding (``decode_image``) is kept apart from tensor preparation (``eval_transform``) so either can move
(a GPU JPEG decoder, a process pool) without touching the other. The numbers come from the bundle's
``PreprocessingSpec``: the exact values a model was trained with are the ones it is served with.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
from collections.abc import Iterator
from typing import Literal

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torchvision.transforms import InterpolationMode, v2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SUPPORTED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")  # JPEG also opens MPO
Interpolation = Literal["nearest", "bilinear", "bicubic"]

logger = logging.getLogger(__name__)


class ImageDecodeError(ValueError):
    """The bytes are not a supported, complete image."""


class ImageTooLargeError(ValueError):
    """The image has more pixels than the configured limit (decompression-bomb guard)."""


class PreprocessingSpec(BaseModel):
    """How pixels become model input: resize the shorter side, centre-crop, normalise."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_size: int = Field(ge=16, le=1024)
    resize_size: int = Field(ge=16, le=2048)
    interpolation: Interpolation = "bilinear"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    @model_validator(mode="after")
    def _check_sizes(self) -> PreprocessingSpec:
        if self.resize_size < self.input_size:
            raise ValueError("resize_size must be >= input_size")
        if any(s <= 0 for s in self.std):
            raise ValueError("std values must be positive")
        return self


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB the same way for training and serving.

    Transparency is composited onto white (what a viewer shows), 16-bit and float greyscale are
    rescaled to 8 bits rather than clipped, and EXIF orientation is applied first.
    """
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image, dtype=np.float32)
        low, high = float(array.min()), float(array.max())
        scale = 255.0 / (high - low) if high > low else 0.0
        image = Image.fromarray(((array - low) * scale).round().astype(np.uint8), mode="L")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def check_pixel_count(width: int, height: int, max_pixels: int) -> None:
    """Raise ``ImageTooLargeError`` for more than ``max_pixels`` (read from a header, before decoding)."""
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"image is {width}x{height} = {width * height} pixels; the limit is {max_pixels}"
        )


def decode_image(data: bytes, max_pixels: int, draft_size: int | None = None) -> Image.Image:
    """Decode untrusted bytes into an RGB image, refusing bombs before the pixels are decoded.

    Raises ``ImageDecodeError`` for anything that is not a complete supported image and
    ``ImageTooLargeError`` when width x height exceeds ``max_pixels``. Animated formats give their
    first frame.

    The exceptions' text goes to clients, so it is always our own sentence: Pillow's messages name
    its internals and its own limits, and go to a debug log line instead.

    With ``draft_size`` a JPEG is decoded at the smallest DCT scale (1/2, 1/4 or 1/8) that keeps both
    sides at least ``draft_size`` pixels: the resize that follows needs no more, and the decoder does
    a fraction of the work. Other formats ignore it.
    """
    if not data:
        raise ImageDecodeError("empty image")
    with pillow_errors(max_pixels):
        # Only the allowed decoders ever parse untrusted headers.
        image = Image.open(io.BytesIO(data), formats=SUPPORTED_FORMATS)
        check_pixel_count(*image.size, max_pixels)
        image.seek(0)
        if draft_size is not None:
            image.draft(None, (draft_size, draft_size))
        image.load()
        return to_rgb(image)


@contextlib.contextmanager
def pillow_errors(max_pixels: int) -> Iterator[None]:
    """Turn whatever Pillow raises on untrusted bytes into ``ImageDecodeError`` or
    ``ImageTooLargeError`` with our own sentence; Pillow's goes to a debug log line."""
    try:
        yield
    except (ImageDecodeError, ImageTooLargeError):
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow checks its own ceiling inside Image.open, before ours can run: it refuses over
        # 2x MAX_IMAGE_PIXELS, and over 1x too where warnings are turned into errors.
        logger.debug("Pillow refused an image: %s", exc)
        raise _refused_by_pillow(exc, max_pixels) from exc
    except UnidentifiedImageError as exc:
        logger.debug("Pillow could not identify an image: %s", exc)
        raise ImageDecodeError(
            "not a recognised image, or not one of the supported formats "
            f"({', '.join(SUPPORTED_FORMATS)})"
        ) from exc
    except MemoryError:
        raise  # the server's trouble, not the image's
    except Exception as exc:
        # OSError, SyntaxError, ValueError, EOFError, TypeError in practice; a plugin may also
        # raise struct.error, IndexError, KeyError, ZeroDivisionError on hostile bytes.
        logger.debug("Pillow could not decode an image: %r", exc)
        raise ImageDecodeError("corrupt or truncated image") from exc


def _refused_by_pillow(exc: Exception, max_pixels: int) -> ImageTooLargeError:
    """Our sentence for Pillow's bomb guard: the pixel count it read and the limit that applied.

    Pillow's exception carries no image, only the count in its message; the limit quoted is the
    configured one unless Pillow's own ceiling was the lower.
    """
    ceiling = Image.MAX_IMAGE_PIXELS or max_pixels
    if isinstance(exc, Image.DecompressionBombError):
        ceiling *= 2
    found = re.search(r"\((\d+) pixels\)", str(exc))
    size = f"image is {found[1]} pixels" if found else "image has too many pixels"
    return ImageTooLargeError(f"{size}; the limit is {min(max_pixels, ceiling)}")


# Training data is trusted more than uploads: twice Pillow's own limit (read at import, before the
# service may turn Pillow's check off; 89,478,485 pixels is its documented default).
DATASET_MAX_PIXELS = 2 * (Image.MAX_IMAGE_PIXELS or 89_478_485)


def load_image_file(
    path: str, max_pixels: int = DATASET_MAX_PIXELS, draft_size: int | None = None
) -> Image.Image:
    """Read an image file from disk the way the service decodes uploads (used for datasets)."""
    with open(path, "rb") as handle:
        return decode_image(handle.read(), max_pixels, draft_size)


def center_square(image: Image.Image) -> Image.Image:
    """The centred square of side min(width, height).

    Resizing the shorter side and centre-cropping never looks outside this square, so cutting it out
    first gives the same pixels while keeping a 1x30000 image from being scaled up to millions of
    pixels on the way.
    """
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return image.crop((left, top, left + side, top + side))


def _normalize(spec: PreprocessingSpec) -> list[v2.Transform]:
    return [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(spec.mean), list(spec.std))]


def pixel_transform(spec: PreprocessingSpec) -> v2.Compose:
    """Deterministic RGB PIL image -> uint8 tensor (3, input_size, input_size), not normalised.

    Serving stops here: uint8 is a quarter of the bytes to stack and copy to the GPU, and the
    normalisation runs once per batch on the device (``Normalizer``) instead of once per image.
    """
    return v2.Compose(
        [
            v2.Lambda(center_square),
            v2.Resize(spec.resize_size, interpolation=InterpolationMode(spec.interpolation)),
            v2.CenterCrop(spec.input_size),
            v2.PILToTensor(),
        ]
    )


class UploadDecoder:
    """Untrusted bytes -> uint8 model input (3, S, S): what the service does with every upload."""

    def __init__(self, spec: PreprocessingSpec, max_pixels: int, jpeg_draft: bool = True) -> None:
        self.transform = pixel_transform(spec)
        self.max_pixels = max_pixels
        self.draft_size = spec.resize_size if jpeg_draft else None

    def __call__(self, data: bytes) -> torch.Tensor:
        """Raises ``ImageDecodeError`` or ``ImageTooLargeError``."""
        return self.transform(decode_image(data, self.max_pixels, self.draft_size))


def eval_transform(spec: PreprocessingSpec) -> v2.Compose:
    """Deterministic RGB PIL image -> normalised float tensor (3, input_size, input_size)."""
    return v2.Compose([pixel_transform(spec), *_normalize(spec)])


class Normalizer:
    """uint8 batches (N, 3, H, W) -> normalised float32, the same numbers as ``eval_transform``.

    ``(x / 255 - mean) / std`` folded into one multiply-add per element.
    """

    def __init__(self, spec: PreprocessingSpec, device: torch.device) -> None:
        std = torch.tensor(spec.std, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        mean = torch.tensor(spec.mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        self.scale = 1.0 / (255.0 * std)
        self.shift = -mean / std

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.shift, batch.to(torch.float32), self.scale)


def train_transform(spec: PreprocessingSpec) -> v2.Compose:
    """Augmenting transform for fine-tuning; ends in the same tensor layout as ``eval_transform``.

    Random crops are taken inside the centred square that serving looks at, so a crop never lands
    on the sides of a wide or tall image that the served model never sees.
    """
    interpolation = InterpolationMode(spec.interpolation)
    return v2.Compose(
        [
            v2.Lambda(center_square),
            v2.Resize(spec.resize_size, interpolation=interpolation),
            v2.RandomResizedCrop(
                spec.input_size,
                scale=(0.6, 1.0),
                interpolation=interpolation,
            ),
            v2.RandomHorizontalFlip(),
            v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2),
            v2.PILToTensor(),
            *_normalize(spec),
        ]
    )
