"""Decode cost and limits read from an image's header, before any pixel is decoded."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from app.model.preprocessing import ImageDecodeError, ImageTooLargeError
from app.serving.image_header import read_header
from tests.conftest import png_claiming


def _encode(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def test_a_jpeg_costs_its_draft_scale_and_other_formats_their_full_size() -> None:
    jpeg = read_header(_encode(Image.new("RGB", (4000, 3000)), "JPEG"), 10**8)
    png = read_header(_encode(Image.new("RGB", (400, 300)), "PNG"), 10**8)
    assert (jpeg.format, jpeg.width, jpeg.height) == ("JPEG", 4000, 3000)
    assert jpeg.decode_cost(draft_size=256) == 500 * 375  # 1/8 keeps the short side >= 256
    assert jpeg.decode_cost(draft_size=1000) == 2000 * 1500  # only 1/2 keeps it >= 1000
    assert jpeg.decode_cost(draft_size=None) == 4000 * 3000
    assert png.decode_cost(draft_size=256) == 400 * 300


def test_the_pixel_limit_is_enforced_from_the_header() -> None:
    with pytest.raises(ImageTooLargeError, match="12000x12000 = 144000000 pixels; the limit is 10"):
        read_header(png_claiming(12_000, 12_000), 10_000_000)


def test_a_size_beyond_pillows_own_ceiling_names_the_configured_limit() -> None:
    with pytest.raises(ImageTooLargeError, match="the limit is 40000000"):
        read_header(png_claiming(60_000, 60_000), 40_000_000)


@pytest.mark.parametrize("data", [b"", b"not an image", b"\xff\xd8\xff" + b"junk" * 10])
def test_garbage_is_an_image_decode_error(data: bytes) -> None:
    with pytest.raises(ImageDecodeError):
        read_header(data, 10**8)


def test_exif_orientation_is_read_for_jpegs() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    Image.new("RGB", (80, 60)).save(buffer, "JPEG", exif=exif.tobytes())
    assert read_header(buffer.getvalue(), 10**6).orientation == 6
