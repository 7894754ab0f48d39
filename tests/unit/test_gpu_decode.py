"""The nvJPEG path's logic, run on the CPU: torchvision decodes there too, so only nvJPEG is missing."""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from PIL import Image

from app.model.preprocessing import PreprocessingSpec, decode_image, pixel_transform
from app.serving import gpu_decode
from app.serving.gpu_decode import (
    EncodedJpeg,
    GpuJpegDecoder,
    StreamOrder,
    call_groups,
    gpu_decodable,
)
from app.serving.image_header import read_header

SPEC = PreprocessingSpec(input_size=56, resize_size=64)


def _jpeg(width: int, height: int, mode: str = "RGB", **options: object) -> bytes:
    rng = np.random.default_rng(width * height)
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack([x * 255 // width, y * 255 // height, (x + y) % 256], -1)
    noisy = np.clip(pixels + rng.normal(0, 6, pixels.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noisy).convert(mode).save(buffer, "JPEG", quality=90, **options)
    return buffer.getvalue()


def _encoded(data: bytes) -> EncodedJpeg:
    header = read_header(data, 10**8)
    return EncodedJpeg(data, header.width * header.height)


def _rotated_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6
    return _jpeg(80, 60, exif=exif.tobytes())


def test_only_plain_jpegs_go_to_the_gpu() -> None:
    png = io.BytesIO()
    Image.new("RGB", (8, 8)).save(png, "PNG")

    def decodable(data: bytes) -> bool:
        return gpu_decodable(read_header(data, 10**6))

    assert decodable(_jpeg(80, 60))
    assert decodable(_jpeg(80, 60, "L"))
    assert not decodable(_jpeg(80, 60, "CMYK"))
    assert not decodable(_rotated_jpeg())
    assert not decodable(png.getvalue())


def test_a_batch_matches_pillow_and_a_corrupt_image_falls_back() -> None:
    good = [_jpeg(120, 90), _jpeg(70, 100, "L")]
    corrupt = EncodedJpeg(_jpeg(100, 100)[:300], 100 * 100)  # its header says 100x100
    decoder = GpuJpegDecoder(SPEC, torch.device("cpu"), max_batch_size=8, max_queue_size=8)
    first, broken, second = decoder.decode_batch([_encoded(good[0]), corrupt, _encoded(good[1])])
    assert broken is None
    for data, got in zip(good, (first, second), strict=True):
        assert got is not None and got.dtype == torch.uint8 and got.shape == (3, 56, 56)
        expected = pixel_transform(SPEC)(decode_image(data, 10**6))
        assert (got.float() - expected.float()).abs().mean() < 3  # of 255 levels


def test_concurrent_images_share_one_decode_call() -> None:
    decoder = GpuJpegDecoder(SPEC, torch.device("cpu"), max_batch_size=8, max_queue_size=8)
    calls: list[int] = []
    decode_batch = decoder.decode_batch

    def counting(images: list[EncodedJpeg]) -> list[torch.Tensor | None]:
        calls.append(len(images))
        return decode_batch(images)

    decoder.decode_batch = counting  # type: ignore[method-assign]

    async def main() -> list[torch.Tensor | None]:
        await decoder.start()
        try:
            jpegs = [_encoded(_jpeg(64 + i, 64)) for i in range(5)]
            return await asyncio.gather(*(decoder.decode(jpeg) for jpeg in jpegs))
        finally:
            await decoder.stop(drain_timeout_s=1)

    results = asyncio.run(main())
    assert all(r is not None and r.shape == (3, 56, 56) for r in results)
    assert calls[0] == 1  # the warm-up
    assert sum(calls[1:]) == 5 and len(calls) < 6  # some of the five were decoded together


class RecordedOrder(StreamOrder):
    """The stream discipline's calls, in order, as ``GpuJpegDecoder`` makes them."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.active_now = False

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        self.events.append("enter")
        self.active_now = True
        try:
            yield
        finally:
            self.active_now = False
            self.events.append("exit")

    def before_decode(self) -> None:
        assert self.active_now  # decoding happens on the decoder's own stream
        self.events.append("before")

    def after_decode(self) -> None:
        self.events.append("after")

    def hand_over(self, images: list[torch.Tensor]) -> None:
        assert self.active_now
        self.events.append(f"hand_over {len(images)}")


def test_every_decode_call_is_fenced_and_the_crops_handed_over_last() -> None:
    order = RecordedOrder()
    decoder = GpuJpegDecoder(SPEC, torch.device("cpu"), 8, 8, order=order)
    corrupt = EncodedJpeg(_jpeg(100, 100)[:300], 100 * 100)

    decoded = decoder.decode_batch([_encoded(_jpeg(120, 90)), corrupt, _encoded(_jpeg(90, 90))])

    assert [image is None for image in decoded] == [False, True, False]
    # The batch call fails on the corrupt image, then each image is tried alone: four calls,
    # each between its own before/after, and the two good crops handed over after all of them.
    fenced = ["before", "after"] * 4
    assert order.events == ["enter", *fenced, "hand_over 2", "exit"]


def test_calls_are_capped_in_pixels_and_a_huge_image_goes_alone() -> None:
    assert call_groups([], 100) == []
    assert call_groups([40, 40, 40, 10, 200, 5], 100) == [
        range(0, 2),
        range(2, 4),
        range(4, 5),
        range(5, 6),
    ]


def test_large_batches_are_split_into_calls_of_bounded_pixels(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    order = RecordedOrder()
    decoder = GpuJpegDecoder(SPEC, torch.device("cpu"), 8, 8, order=order)
    monkeypatch.setattr(gpu_decode, "MAX_PIXELS_PER_CALL", 2 * 80 * 60)
    images = [_encoded(_jpeg(80, 60)) for _ in range(5)]

    decoded = decoder.decode_batch(images)

    assert all(image is not None for image in decoded)
    assert order.events == ["enter", *["before", "after"] * 3, "hand_over 5", "exit"]


def test_very_large_jpegs_are_left_to_pillow() -> None:
    decoder = GpuJpegDecoder(SPEC, torch.device("cpu"), 8, 8, max_image_pixels=100 * 100)
    assert decoder.takes(read_header(_jpeg(100, 100), 10**6))
    assert not decoder.takes(read_header(_jpeg(101, 100), 10**6))
    assert not decoder.takes(read_header(_rotated_jpeg(), 10**6))
