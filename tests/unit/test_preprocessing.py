"""Decoding untrusted bytes and turning images into model input."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from app.preprocessing import (
    ImageDecodeError,
    ImageTooLargeError,
    PreprocessingSpec,
    decode_image,
    eval_transform,
    pixel_transform,
    to_rgb,
    train_transform,
)

SPEC = PreprocessingSpec(input_size=32, resize_size=36, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


def _encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def test_transparent_pixels_become_white() -> None:
    image = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    assert to_rgb(image).getpixel((0, 0)) == (255, 255, 255)


def test_palette_with_transparency_becomes_white() -> None:
    image = Image.new("P", (4, 4), 0)
    image.putpalette([10, 20, 30] + [0] * 765)
    image.info["transparency"] = 0
    assert to_rgb(image).getpixel((1, 1)) == (255, 255, 255)


def test_sixteen_bit_greyscale_is_rescaled_not_clipped() -> None:
    array = np.linspace(0, 65535, 64, dtype=np.uint16).reshape(8, 8)
    rgb = np.asarray(to_rgb(Image.fromarray(array)))
    assert rgb.min() == 0 and rgb.max() == 255


def test_exif_orientation_is_applied() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    data = _encode(Image.new("RGB", (40, 20)), "JPEG", exif=exif.tobytes())
    assert decode_image(data, 10**6).size == (20, 40)


def test_gif_gives_its_first_frame() -> None:
    frames = [Image.new("RGB", (8, 8), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    assert decode_image(buffer.getvalue(), 10**6).getpixel((0, 0))[0] > 200


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "RGBA", "CMYK", "I;16", "I", "F"])
def test_every_mode_becomes_rgb(mode: str) -> None:
    assert to_rgb(Image.new(mode, (5, 5))).mode == "RGB"


def test_pixel_limit_is_checked_before_decoding() -> None:
    data = _encode(Image.new("L", (3000, 3000)), "PNG")
    with pytest.raises(ImageTooLargeError, match="3000x3000"):
        decode_image(data, max_pixels=1_000_000)


@pytest.mark.parametrize(
    "data",
    [b"", b"not an image", _encode(Image.new("RGB", (50, 50)), "JPEG")[:100]],
    ids=["empty", "text", "truncated"],
)
def test_bad_bytes_raise_decode_error(data: bytes) -> None:
    with pytest.raises(ImageDecodeError):
        decode_image(data, 10**6)


def test_unsupported_format_is_refused() -> None:
    data = _encode(Image.new("RGB", (8, 8)), "PPM")
    with pytest.raises(ImageDecodeError, match="supported formats"):
        decode_image(data, 10**6)


def test_eval_transform_resizes_crops_and_normalises() -> None:
    tensor = eval_transform(SPEC)(Image.new("RGB", (90, 60), (255, 255, 255)))
    assert tensor.shape == (3, 32, 32)
    torch.testing.assert_close(tensor, torch.ones(3, 32, 32))


def test_train_transform_has_the_eval_layout() -> None:
    tensor = train_transform(SPEC)(Image.new("RGB", (90, 60)))
    assert tensor.shape == (3, 32, 32) and tensor.dtype == torch.float32


def test_spec_refuses_resize_smaller_than_crop() -> None:
    with pytest.raises(ValueError, match="resize_size"):
        PreprocessingSpec(input_size=64, resize_size=32)


def _photo(width: int, height: int) -> Image.Image:
    """Smooth colour gradients with some texture: what DCT scaling is meant for."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    noise = np.random.default_rng(0).normal(0, 8, (height, width, 3))
    channels = np.stack([x / width * 255, y / height * 255, (x + y) / (width + height) * 255], -1)
    return Image.fromarray(np.clip(channels + noise, 0, 255).astype(np.uint8))


def test_jpeg_draft_decodes_at_the_smallest_scale_that_covers_the_resize() -> None:
    data = _encode(_photo(800, 600), "JPEG", quality=90)
    assert decode_image(data, 10**8).size == (800, 600)
    assert decode_image(data, 10**8, draft_size=112).size == (200, 150)  # 1/4: 1/8 is too small
    assert decode_image(data, 10**8, draft_size=300).size == (400, 300)
    assert decode_image(data, 10**8, draft_size=301).size == (800, 600)


def test_jpeg_draft_changes_the_model_input_only_slightly() -> None:
    data = _encode(_photo(800, 600), "JPEG", quality=90)
    spec = PreprocessingSpec(input_size=96, resize_size=112)
    full = pixel_transform(spec)(decode_image(data, 10**8)).float()
    draft = pixel_transform(spec)(decode_image(data, 10**8, draft_size=112)).float()
    assert draft.shape == full.shape == (3, 96, 96)
    assert (draft - full).abs().mean() < 2.0  # of 255 levels


def test_draft_leaves_other_formats_alone() -> None:
    data = _encode(_photo(400, 300), "PNG")
    assert decode_image(data, 10**8, draft_size=100).size == (400, 300)


def test_pixel_transform_is_eval_transform_before_normalisation() -> None:
    image = _photo(70, 50)
    pixels = pixel_transform(SPEC)(image)
    assert pixels.dtype == torch.uint8
    normalised = (pixels.float() / 255 - 0.5) / 0.5
    torch.testing.assert_close(normalised, eval_transform(SPEC)(image))
