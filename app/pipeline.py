"""Image bytes -> tensors (decode pool) -> batcher -> runner: everything /predict needs, no HTTP.

Built and torn down by the app's lifespan; the routes only call ``prepare`` and ``classify``.
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor

import torch

from app.batcher import BatchedResult, DynamicBatcher
from app.gpu_decode import GpuJpegDecoder, gpu_decodable
from app.preprocessing import UploadDecoder
from app.runner import ModelRunner
from app.settings import Settings

MAX_AUTO_DECODE_THREADS = 8


def decode_threads(setting: int, on_cuda: bool) -> int:
    """The decode pool's size: the setting, or else what measured best.

    With the model on the CPU, one thread: a CPU forward pass keeps every core busy, and each more
    decoder only preempts its threads (on a 2-core host, two decode threads served 92 images/s at 32
    clients where one served 122; decoding on the inference thread itself, between batches, measured
    no better). With the model on a GPU the cores are free: one thread per core, up to 8.
    """
    if setting:
        return setting
    return min(os.cpu_count() or 1, MAX_AUTO_DECODE_THREADS) if on_cuda else 1


class InferencePipeline:
    """Decode and crop to uint8 on a thread pool, then batch into the runner's inference threads."""

    def __init__(self, runner: ModelRunner, settings: Settings) -> None:
        self.runner = runner
        self.settings = settings
        spec = runner.bundle.manifest.preprocessing
        self.decode = UploadDecoder(spec, settings.max_image_pixels, settings.jpeg_draft)
        self.decode_pool = ThreadPoolExecutor(
            decode_threads(settings.decode_workers, runner.on_cuda), thread_name_prefix="decode"
        )
        self.gpu_decoder = (
            GpuJpegDecoder(spec, runner.device, settings.max_batch_size, settings.max_queue_size)
            if settings.gpu_decode
            else None
        )
        self.batcher: DynamicBatcher[torch.Tensor, torch.Tensor] = DynamicBatcher(
            runner.run_batch,
            max_batch_size=settings.max_batch_size,
            max_queue_size=settings.max_queue_size,
            max_batch_delay_s=settings.max_batch_delay_ms / 1000,
            max_batches_in_flight=runner.batches_in_flight,
        )

    async def start(self) -> float:
        """Warm the model up at every batch size, then start batching; returns warm-up seconds."""
        seconds = await self.runner.warm_up()
        self.batcher.start()
        if self.gpu_decoder is not None:
            await self.gpu_decoder.start()
        return seconds

    async def prepare(self, data: bytes) -> torch.Tensor:
        """Decode untrusted bytes and build the model input off the event loop.

        Raises ``ImageDecodeError`` or ``ImageTooLargeError`` from ``app.preprocessing``.
        """
        if self.gpu_decoder is not None and gpu_decodable(data, self.settings.max_image_pixels):
            on_gpu = await self.gpu_decoder.decode(data)
            if on_gpu is not None:
                return on_gpu
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.decode_pool, self.decode, data)

    async def classify(
        self, images: list[torch.Tensor], timeout_s: float
    ) -> list[BatchedResult[torch.Tensor]]:
        """Class probabilities per image, batched with concurrent requests, within ``timeout_s``."""
        return await self.batcher.submit(images, timeout_s=timeout_s)

    async def stop(self) -> None:
        """Finish queued work within the drain timeout, then release the threads."""
        await self.batcher.stop(self.settings.drain_timeout_s)
        if self.gpu_decoder is not None:
            await self.gpu_decoder.stop(drain_timeout_s=0)
        self.decode_pool.shutdown(wait=False, cancel_futures=True)
        await asyncio.to_thread(self.runner.close)
