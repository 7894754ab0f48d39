"""What an upload will cost to decode, read from its header before any pixel is decoded.

Admission reserves decode work by these numbers, and the per-request budget is checked against
them, so a request full of huge images is refused (413) or deferred (503) without spending a
millisecond of the decode pool on it. Reading a header parses a few hundred bytes to a few KB.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image

from app.model.preprocessing import (
    SUPPORTED_FORMATS,
    ImageDecodeError,
    check_pixel_count,
    pillow_errors,
)

EXIF_ORIENTATION = 0x0112
JPEG_FORMATS = ("JPEG", "MPO")
DRAFT_SCALES = (8, 4, 2)  # the DCT scales libjpeg can decode at, largest first
MAX_TILES = 100_000  # a TIFF of 40 MP in one-row strips has 5,000-8,000; more is an attack


@dataclass(frozen=True)
class ImageHeader:
    """Format, size, colour mode and EXIF orientation (JPEG only) of an undecoded image."""

    format: str
    width: int
    height: int
    mode: str
    orientation: int = 1

    def decode_cost(self, draft_size: int | None) -> int:
        """Pixels the decoder will produce: a JPEG decoded in draft mode at 1/2, 1/4 or 1/8 scale
        (the smallest that keeps both sides at least ``draft_size``) costs that many fewer."""
        if draft_size is not None and self.format in JPEG_FORMATS:
            for scale in DRAFT_SCALES:
                if min(self.width, self.height) // scale >= draft_size:
                    return -(-self.width // scale) * -(-self.height // scale)
        return self.width * self.height


def read_header(data: bytes, max_pixels: int) -> ImageHeader:
    """Parse ``data``'s header; raises ``ImageDecodeError`` or ``ImageTooLargeError``.

    Only the first frame of animated formats is ever decoded, so frame counts need no limit; a
    TIFF's strip or tile count does (each is a separate decoder call).
    """
    if not data:
        raise ImageDecodeError("empty image")
    with (
        pillow_errors(max_pixels),
        Image.open(io.BytesIO(data), formats=SUPPORTED_FORMATS) as image,
    ):
        check_pixel_count(*image.size, max_pixels)
        if len(image.tile) > MAX_TILES:
            raise ImageDecodeError(f"image has {len(image.tile)} strips or tiles")
        orientation = 1
        if image.format in JPEG_FORMATS:
            orientation = image.getexif().get(EXIF_ORIENTATION, 1)
        return ImageHeader(image.format or "", *image.size, image.mode, orientation)
