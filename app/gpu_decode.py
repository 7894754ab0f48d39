"""JPEG decoding on the GPU: nvJPEG through ``torchvision.io.decode_jpeg``, many images per call.

On a GPU host the CPU, not the GPU, runs out first: a 500x375 JPEG costs a core about 2 ms to
decode and resize, so 10,000 images/s would need 20 cores for decoding alone. nvJPEG decodes a batch
of them in one call, and the resize and crop run on the GPU too, leaving the uint8 model input on the
device. Only plain JPEGs go this way (RGB or greyscale, no EXIF rotation); everything else, and any
JPEG nvJPEG refuses, is decoded by Pillow exactly as on a CPU host.
"""

from __future__ import annotations

import asyncio
import io
import warnings
from concurrent.futures import ThreadPoolExecutor

import torch
from PIL import Image
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional

from app.batcher import BatcherError, DynamicBatcher
from app.image_header import ImageHeader
from app.preprocessing import PreprocessingSpec

GPU_MODES = ("RGB", "L")  # nvJPEG's RGB output matches Pillow's conversion for these


def gpu_decodable(header: ImageHeader) -> bool:
    """Whether nvJPEG can take an image in place of Pillow: a plain JPEG, RGB or greyscale, with no
    EXIF rotation to apply (nvJPEG ignores it)."""
    return header.format == "JPEG" and header.mode in GPU_MODES and header.orientation == 1


class GpuJpegDecoder:
    """JPEG bytes -> uint8 model input (3, S, S) on the GPU; concurrent requests share one call.

    Its own batcher and thread keep decoding off the event loop and apart from the forward passes.
    """

    def __init__(
        self,
        spec: PreprocessingSpec,
        device: torch.device,
        max_batch_size: int,
        max_queue_size: int,
    ) -> None:
        self.spec = spec
        self.device = device
        self.interpolation = InterpolationMode(spec.interpolation)
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="gpu-decode")
        self._batcher: DynamicBatcher[bytes, torch.Tensor | None] = DynamicBatcher(
            self._run_batch, max_batch_size=max_batch_size, max_queue_size=max_queue_size
        )

    async def start(self) -> None:
        """Initialise nvJPEG (slow the first time) before the first request, then take work."""
        sample = io.BytesIO()
        Image.new("RGB", (64, 48), (90, 120, 150)).save(sample, "JPEG")
        await self._run_batch([sample.getvalue()])
        self._batcher.start()

    async def stop(self, drain_timeout_s: float) -> None:
        await self._batcher.stop(drain_timeout_s)
        self._thread.shutdown(wait=True)

    async def decode(self, data: bytes) -> torch.Tensor | None:
        """The model input for one JPEG, or None when the CPU should decode it instead."""
        try:
            (result,) = await self._batcher.submit([data])
        except BatcherError:  # queue full or stopping: Pillow is still there
            return None
        return result.value

    async def _run_batch(self, images: list[bytes]) -> list[torch.Tensor | None]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, self.decode_batch, images)

    def decode_batch(self, images: list[bytes]) -> list[torch.Tensor | None]:
        encoded = [torch.frombuffer(bytearray(data), dtype=torch.uint8) for data in images]
        try:
            decoded: list[torch.Tensor | None] = list(self._decode(encoded))
        except RuntimeError:  # one bad image fails the call: find it, keep the others
            decoded = [self._decode_one(data) for data in encoded]
        return [None if image is None else self._crop(image) for image in decoded]

    def _decode(self, encoded: list[torch.Tensor]) -> list[torch.Tensor]:
        with warnings.catch_warnings():  # deprecated in favour of TorchCodec, still supported
            warnings.simplefilter("ignore", DeprecationWarning)
            return decode_jpeg(encoded, mode=ImageReadMode.RGB, device=self.device)

    def _decode_one(self, encoded: torch.Tensor) -> torch.Tensor | None:
        try:
            return self._decode([encoded])[0]
        except RuntimeError:
            return None

    def _crop(self, image: torch.Tensor) -> torch.Tensor:
        """The centre square, resized and centre-cropped: ``pixel_transform`` on the GPU."""
        height, width = image.shape[-2:]
        side = min(height, width)
        top, left = (height - side) // 2, (width - side) // 2  # as center_square rounds
        square = image[:, top : top + side, left : left + side]
        resized = functional.resize(
            square,
            [self.spec.resize_size, self.spec.resize_size],
            interpolation=self.interpolation,
            antialias=True,
        )
        return functional.center_crop(resized, [self.spec.input_size, self.spec.input_size])
