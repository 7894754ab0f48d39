"""Decoding untrusted bytes and turning images into model input."""

from __future__ import annotations

import io
import math
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from app.model.preprocessing import (
    ImageDecodeError,
    ImageTooLargeError,
    PreprocessingSpec,
    decode_image,
    eval_transform,
    pixel_transform,
    to_rgb,
    train_transform,
)
from tests.conftest import png_claiming

SPEC = PreprocessingSpec(input_size=32, resize_size=36, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


def _encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _photo(width: int, height: int) -> Image.Image:
    """Smooth colour gradients with some texture: what DCT scaling is meant for."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    noise = np.random.default_rng(0).normal(0, 8, (height, width, 3))
    channels = np.stack([x / width * 255, y / height * 255, (x + y) / (width + height) * 255], -1)
    return Image.fromarray(np.clip(channels + noise, 0, 255).astype(np.uint8))


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


def _with_bad_ihdr_crc() -> bytes:
    data = bytearray(_encode(Image.new("RGB", (50, 50)), "PNG"))
    data[8 + 4 + 4 + 13] ^= 0xFF  # first CRC byte: signature, length, type, 13 header bytes
    return bytes(data)


def _with_corrupt_idat() -> bytes:
    data = bytearray(_encode(_photo(50, 50), "PNG"))
    data[data.index(b"IDAT") + 8] ^= 0xFF
    return bytes(data)


# What Pillow's own messages contain and ours must not: module, class and constant names, its
# byte counts and object reprs, its own limits.
PILLOW_WORDS = ("PIL", "Image.", "MAX_IMAGE_PIXELS", "DecompressionBomb", "BytesIO", "processed")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_encode(_photo(64, 48), "JPEG")[:-40], "corrupt or truncated image"),
        (_encode(_photo(64, 48), "PNG")[:80], "corrupt or truncated image"),
        (_with_corrupt_idat(), "corrupt or truncated image"),
        (bytes(range(256)) * 4, "not a recognised image"),
        (_with_bad_ihdr_crc(), "not a recognised image"),
    ],
    ids=["truncated-jpeg", "truncated-png", "corrupt-png-data", "garbage", "png-bad-crc"],
)
def test_decode_errors_are_our_sentences_not_pillows(data: bytes, message: str) -> None:
    with pytest.raises(ImageDecodeError) as caught:
        decode_image(data, 10**6)
    assert str(caught.value).startswith(message)
    assert not any(word in str(caught.value) for word in PILLOW_WORDS)


def test_unrecognised_image_message_lists_the_supported_formats() -> None:
    with pytest.raises(ImageDecodeError) as caught:
        decode_image(b"garbage bytes", 10**6)
    assert str(caught.value).endswith("(JPEG, PNG, WEBP, BMP, GIF, TIFF)")


def test_bomb_over_pillows_ceiling_names_the_configured_limit() -> None:
    with pytest.raises(ImageTooLargeError) as caught:
        decode_image(png_claiming(50_000, 50_000), max_pixels=40_000_000)
    assert str(caught.value) == "image is 2500000000 pixels; the limit is 40000000"


def _between_pillows_warning_and_error() -> tuple[int, bytes]:
    """A header 1.5x Pillow's MAX_IMAGE_PIXELS: where Pillow only warns and would decode."""
    side = math.isqrt(int(1.5 * Image.MAX_IMAGE_PIXELS))
    return side, png_claiming(side, side)


def test_image_pillow_only_warns_about_is_still_refused() -> None:
    side, data = _between_pillows_warning_and_error()
    with pytest.warns(Image.DecompressionBombWarning), pytest.raises(ImageTooLargeError) as caught:
        decode_image(data, max_pixels=40_000_000)
    assert (
        str(caught.value) == f"image is {side}x{side} = {side * side} pixels; the limit is 40000000"
    )


def test_pillow_warning_raised_as_error_becomes_image_too_large() -> None:
    side, data = _between_pillows_warning_and_error()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ImageTooLargeError) as caught:
            decode_image(data, max_pixels=40_000_000)
    assert str(caught.value) == f"image is {side * side} pixels; the limit is 40000000"


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


@pytest.mark.parametrize("error", [IndexError("tile"), KeyError("mode"), ZeroDivisionError()])
def test_any_error_a_decoder_plugin_raises_is_a_corrupt_image(
    monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    def plugin_fails(*_: object, **__: object) -> Image.Image:
        raise error

    monkeypatch.setattr(Image, "open", plugin_fails)
    with pytest.raises(ImageDecodeError, match=r"^corrupt or truncated image$"):
        decode_image(b"bytes a plugin chokes on", max_pixels=10_000)
