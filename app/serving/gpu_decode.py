"""JPEG decoding on the GPU: nvJPEG through ``torchvision.io.decode_jpeg``, many images per call.

On a GPU host the CPU, not the GPU, runs out first: a 500x375 JPEG costs a core about 2 ms to
decode and resize, so 10,000 images/s would need 20 cores for decoding alone. nvJPEG decodes a batch
of them in one call, and the resize and crop run on the GPU too, leaving the uint8 model input on the
device. Only plain JPEGs go this way (RGB or greyscale, no EXIF rotation, at most
``GPU_DECODE_MAX_PIXELS``); everything else, and any JPEG nvJPEG refuses, is decoded by Pillow
exactly as on a CPU host.

nvJPEG decodes at full size (Pillow's draft mode decodes a large JPEG at 1/8 of it), so admission
charges these images their full pixel count, the very large ones go to Pillow, and one call decodes
at most ``MAX_PIXELS_PER_CALL`` pixels.

Streams: torchvision 0.29's batched decode allocates its outputs on the current stream but writes
them from a private stream that does not wait for it (upstream vision#9606), so a block freed on
the current stream, still to be read by queued kernels, can be overwritten. Decoding therefore runs
on a stream of its own, idle before each call and with the device synchronised after it, and what
leaves for the model is marked as used on the model's stream (``CudaStreamOrder``).
"""

from __future__ import annotations

import asyncio
import io
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
from PIL import Image
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional

from app.model.devices import bind_thread
from app.model.preprocessing import PreprocessingSpec
from app.serving.batcher import BatcherError, DynamicBatcher
from app.serving.image_header import ImageHeader

GPU_MODES = ("RGB", "L")  # nvJPEG's RGB output matches Pillow's conversion for these
# Full-size RGB output of one nvJPEG call: 64 MP is 192 MB, plus nvJPEG's own buffers, whatever
# the number of images that share the call.
MAX_PIXELS_PER_CALL = 64_000_000


def gpu_decodable(header: ImageHeader) -> bool:
    """Whether nvJPEG can take an image in place of Pillow: a plain JPEG, RGB or greyscale, with no
    EXIF rotation to apply (nvJPEG ignores it)."""
    return header.format == "JPEG" and header.mode in GPU_MODES and header.orientation == 1


@dataclass(frozen=True)
class EncodedJpeg:
    """One JPEG for nvJPEG and its pixel count at full size, read from its header."""

    data: bytes
    pixels: int


def call_groups(pixels: Sequence[int], max_pixels: int) -> list[range]:
    """Consecutive runs of images, each run one nvJPEG call of at most ``max_pixels`` pixels (an
    image larger than that alone)."""
    groups: list[range] = []
    start, total = 0, 0
    for index, count in enumerate(pixels):
        if index > start and total + count > max_pixels:
            groups.append(range(start, index))
            start, total = index, 0
        total += count
    if pixels:
        groups.append(range(start, len(pixels)))
    return groups


class StreamOrder:
    """How decoding is ordered against the model's GPU work; on the CPU there is nothing to order.

    ``GpuJpegDecoder`` calls, for each batch: ``active()`` around everything, ``before_decode``
    and ``after_decode`` around each nvJPEG call, ``hand_over`` with the crops before returning.
    """

    def active(self) -> AbstractContextManager[object]:
        return nullcontext()

    def before_decode(self) -> None:
        """Before nvJPEG writes: nothing queued may still read memory it could be handed."""

    def after_decode(self) -> None:
        """After the call: nvJPEG's writes are complete before anything reads them."""

    def hand_over(self, images: list[torch.Tensor]) -> None:
        """The crops are complete, and their memory stays theirs until the model has read them."""


class CudaStreamOrder(StreamOrder):
    """Decoding on its own stream of ``device``, with the waits torchvision's decode lacks."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.stream = torch.cuda.Stream(device)
        # ModelRunner stacks and runs its batches on the device's default stream.
        self.consumer = torch.cuda.default_stream(device)

    def active(self) -> AbstractContextManager[object]:
        return torch.cuda.stream(self.stream)

    def before_decode(self) -> None:
        # Blocks freed on this stream are reused at once: the kernels that read them must be done.
        _wait_idle(self.stream)

    def after_decode(self) -> None:
        # nvJPEG's private stream is not ours to wait on; the whole device is.
        torch.cuda.synchronize(self.device)

    def hand_over(self, images: list[torch.Tensor]) -> None:
        _wait_idle(self.stream)
        for image in images:
            # Freed after the model's stack has read it, not when this thread lets go of it.
            image.record_stream(self.consumer)


def _wait_idle(stream: torch.cuda.Stream) -> None:
    """Wait, sleeping rather than spinning a core, until ``stream`` has done its queued work."""
    done = torch.cuda.Event(blocking=True)
    done.record(stream)
    done.synchronize()


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
        max_image_pixels: int = MAX_PIXELS_PER_CALL,
        order: StreamOrder | None = None,
    ) -> None:
        self.spec = spec
        self.device = device
        self.max_image_pixels = max_image_pixels
        self.interpolation = InterpolationMode(spec.interpolation)
        self.order = order or (CudaStreamOrder(device) if device.type == "cuda" else StreamOrder())
        self._thread = ThreadPoolExecutor(
            1, thread_name_prefix="gpu-decode", initializer=bind_thread, initargs=(device,)
        )
        self._batcher: DynamicBatcher[EncodedJpeg, torch.Tensor | None] = DynamicBatcher(
            self._run_batch, max_batch_size=max_batch_size, max_queue_size=max_queue_size
        )

    def takes(self, header: ImageHeader) -> bool:
        """Whether this decoder, not Pillow, is to decode the image: nvJPEG can, and it is not one
        of the very large ones (full size on the GPU, where Pillow's draft mode reads 1/8)."""
        return gpu_decodable(header) and header.width * header.height <= self.max_image_pixels

    async def start(self) -> None:
        """Initialise nvJPEG (slow the first time) before the first request, then take work."""
        sample = io.BytesIO()
        Image.new("RGB", (64, 48), (90, 120, 150)).save(sample, "JPEG")
        await self._run_batch([EncodedJpeg(sample.getvalue(), 64 * 48)])
        self._batcher.start()

    async def stop(self, drain_timeout_s: float) -> None:
        await self._batcher.stop(drain_timeout_s)
        self._thread.shutdown(wait=True)

    async def decode(self, image: EncodedJpeg) -> torch.Tensor | None:
        """The model input for one JPEG, or None when the CPU should decode it instead."""
        try:
            (result,) = await self._batcher.submit([image])
        except BatcherError:  # queue full or stopping: Pillow is still there
            return None
        return result.value

    async def _run_batch(self, images: list[EncodedJpeg]) -> list[torch.Tensor | None]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, self.decode_batch, images)

    def decode_batch(self, images: list[EncodedJpeg]) -> list[torch.Tensor | None]:
        """Model inputs for ``images``, in order; None for each one nvJPEG refuses."""
        crops: list[torch.Tensor | None] = []
        with self.order.active():
            for group in call_groups([image.pixels for image in images], MAX_PIXELS_PER_CALL):
                crops += self._decode_call([images[i].data for i in group])
            self.order.hand_over([crop for crop in crops if crop is not None])
        return crops

    def _decode_call(self, images: list[bytes]) -> list[torch.Tensor | None]:
        encoded = [torch.frombuffer(bytearray(data), dtype=torch.uint8) for data in images]
        try:
            decoded: list[torch.Tensor | None] = list(self._decode(encoded))
        except RuntimeError:  # one bad image fails the call: find it, keep the others
            decoded = [self._decode_one(data) for data in encoded]
        return [None if image is None else self._crop(image) for image in decoded]

    def _decode(self, encoded: list[torch.Tensor]) -> list[torch.Tensor]:
        self.order.before_decode()
        try:
            with warnings.catch_warnings():  # deprecated in favour of TorchCodec, still supported
                warnings.simplefilter("ignore", DeprecationWarning)
                return decode_jpeg(encoded, mode=ImageReadMode.RGB, device=self.device)
        finally:
            self.order.after_decode()

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
