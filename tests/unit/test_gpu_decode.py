"""The nvJPEG path's logic, run on the CPU: torchvision decodes there too, so only nvJPEG is missing."""

from __future__ import annotations

import asyncio
import io

import numpy as np
import torch
from PIL import Image

from app.gpu_decode import GpuJpegDecoder, gpu_decodable
from app.image_header import read_header
from app.preprocessing import PreprocessingSpec, decode_image, pixel_transform

SPEC = PreprocessingSpec(input_size=56, resize_size=64)


def _jpeg(width: int, height: int, mode: str = "RGB", **options: object) -> bytes:
    rng = np.random.default_rng(width * height)
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack([x * 255 // width, y * 255 // height, (x + y) % 256], -1)
    noisy = np.clip(pixels + rng.normal(0, 6, pixels.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noisy).convert(mode).save(buffer, "JPEG", quality=90, **options)
    return buffer.getvalue()


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
    corrupt = _jpeg(100, 100)[:300]
    decoder = GpuJpegDecoder(SPEC, torch.device("cpu"), max_batch_size=8, max_queue_size=8)
    first, broken, second = decoder.decode_batch([good[0], corrupt, good[1]])
    assert broken is None
    for data, got in zip(good, (first, second), strict=True):
        assert got is not None and got.dtype == torch.uint8 and got.shape == (3, 56, 56)
        expected = pixel_transform(SPEC)(decode_image(data, 10**6))
        assert (got.float() - expected.float()).abs().mean() < 3  # of 255 levels


def test_concurrent_images_share_one_decode_call() -> None:
    decoder = GpuJpegDecoder(SPEC, torch.device("cpu"), max_batch_size=8, max_queue_size=8)
    calls: list[int] = []
    decode_batch = decoder.decode_batch

    def counting(images: list[bytes]) -> list[torch.Tensor | None]:
        calls.append(len(images))
        return decode_batch(images)

    decoder.decode_batch = counting  # type: ignore[method-assign]

    async def main() -> list[torch.Tensor | None]:
        await decoder.start()
        try:
            return await asyncio.gather(*(decoder.decode(_jpeg(64 + i, 64)) for i in range(5)))
        finally:
            await decoder.stop(drain_timeout_s=1)

    results = asyncio.run(main())
    assert all(r is not None and r.shape == (3, 56, 56) for r in results)
    assert calls[0] == 1  # the warm-up
    assert sum(calls[1:]) == 5 and len(calls) < 6  # some of the five were decoded together
