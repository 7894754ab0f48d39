"""Image bytes -> tensors (decode pool) -> batcher -> runner: everything /predict needs, no HTTP.

Built and torn down by the app's lifespan (one pipeline per served model version, over the
server's shared ``DecodeWorkers``); the service calls ``prepare_all``, ``parse`` and ``classify``.
Decoding is bounded and fair, across every model: a request's images are costed from their headers and
held to the per-request and server budgets before any is decoded; each request has at most one
image per decode thread in the pool at a time, so a request of 64 large images interleaves with
the small ones behind it instead of going first; across requests the pool takes the cheaper and
older images first (``FairDecodePool``), so small images are not queued behind other clients'
large ones; and when a request fails, times out or its client leaves, its images not yet decoding
are dropped.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import torch

from app.model.preprocessing import ImageDecodeError, ImageTooLargeError, UploadDecoder
from app.serving.admission import AdmissionGate, Ticket
from app.serving.batcher import BatchedResult, DynamicBatcher
from app.serving.decode_pool import FairDecodePool
from app.serving.gpu_decode import EncodedJpeg, GpuJpegDecoder
from app.serving.image_header import ImageHeader, read_header
from app.serving.memory import MemoryTrimmer
from app.serving.runner import ModelRunner
from app.serving.statistics import RunningStatistics
from app.settings import Settings

MAX_AUTO_DECODE_THREADS = 8
RUNNER_STOP_TIMEOUT_S = 5.0  # longer than any sane batch; a stuck one is left behind
logger = logging.getLogger(__name__)
T = TypeVar("T")


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


class RejectedImageError(Exception):
    """Image ``index`` of a request cannot be used; ``cause`` says why (decode error or too large)."""

    def __init__(self, index: int, cause: ImageDecodeError | ImageTooLargeError) -> None:
        super().__init__(str(cause))
        self.index = index
        self.cause = cause


class DecodeBudgetError(Exception):
    """A request's images together need more decoding than one request may ask for."""


class DecodeWorkers:
    """The threads every model's pipelines share: the decode pool, the parse thread and the heap
    trimmer. One per server, started and closed with it: several models do not mean several pools
    competing for the cores, and the pool's fairness holds across models."""

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self.pool = FairDecodePool(threads)
        # Parsing a body (a v2 JSON tensor) is GIL-bound: one thread, so that parses take turns with
        # the event loop rather than with each other for the GIL (on six threads eight 27-image JSON
        # bodies held /health/live up to 180 ms; on one, under 50 ms).
        self.parse_thread = ThreadPoolExecutor(1, thread_name_prefix="parse")
        self.trimmer = MemoryTrimmer()  # floods of large images leave freed heap behind

    def start(self) -> None:
        self.trimmer.start()

    def close(self) -> None:
        self.pool.shutdown()
        self.parse_thread.shutdown(wait=False, cancel_futures=True)
        self.trimmer.close()


class InferencePipeline:
    """Decode and crop to uint8 on the shared workers, then batch into the runner's inference
    threads: one per served model version."""

    def __init__(
        self,
        runner: ModelRunner,
        settings: Settings,
        gate: AdmissionGate,
        workers: DecodeWorkers,
    ) -> None:
        self.runner = runner
        self.settings = settings
        spec = runner.bundle.manifest.preprocessing
        self.decode = UploadDecoder(spec, settings.max_image_pixels, settings.jpeg_draft)
        self.workers = workers  # the server's, shared by every model and version
        self.gpu_decoder = (
            GpuJpegDecoder(
                spec,
                runner.device,
                runner.max_batch_size,
                settings.max_queue_size,
                settings.gpu_decode_max_pixels,
            )
            if settings.gpu_decode
            else None
        )
        self.statistics = RunningStatistics()
        self.batcher: DynamicBatcher[torch.Tensor, torch.Tensor] = DynamicBatcher(
            self._run_batch,
            max_batch_size=runner.max_batch_size,
            max_queue_size=settings.max_queue_size,
            max_batch_delay_s=settings.max_batch_delay_ms / 1000,
            max_batches_in_flight=runner.batches_in_flight,
        )
        self.threads_stuck = False
        self.gate = gate  # the server's, shared by every model and version

    async def start(self) -> float:
        """Warm the model up at every batch size, then start batching; returns warm-up seconds."""
        seconds = await self.runner.warm_up()
        self.batcher.start()
        if self.gpu_decoder is not None:
            await self.gpu_decoder.start()
        return seconds

    async def prepare_all(self, uploads: list[bytes], ticket: Ticket) -> list[torch.Tensor]:
        """Decode a request's untrusted images into model inputs, in order, within its budgets.

        Raises ``RejectedImageError`` for the first unusable image, ``DecodeBudgetError`` when the
        images together are over the per-request budget and ``OverloadedError`` when the server's
        decode budget is spent. Cancelling the call drops the images not yet being decoded.
        """
        ticket.hold_images(len(uploads))
        headers = await asyncio.to_thread(self._read_headers, uploads)
        costs = [self._decode_cost(header) for header in headers]
        if sum(costs) > self.settings.max_request_pixels:
            raise DecodeBudgetError(
                f"the images need {sum(costs)} pixels decoded; one request may ask for "
                f"{self.settings.max_request_pixels}"
            )
        ticket.hold_decode_pixels(sum(costs))
        slots = asyncio.Semaphore(self.workers.threads)  # this request's share of the pool
        tasks = [
            asyncio.create_task(self._decode_one(index, data, header, cost, ticket, slots))
            for index, (data, header, cost) in enumerate(zip(uploads, headers, costs, strict=True))
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            for task in tasks:
                task.cancel()
        failed = [task for task in done if not task.cancelled() and task.exception()]
        if failed:
            first = min(failed, key=tasks.index).exception()
            raise first  # type: ignore[misc]  # not None: `failed` keeps tasks that raised
        return [task.result() for task in tasks]

    def _gpu_decoder_for(self, header: ImageHeader) -> GpuJpegDecoder | None:
        """The nvJPEG decoder if it is to decode ``header``'s image, else None (Pillow)."""
        if self.gpu_decoder is not None and self.gpu_decoder.takes(header):
            return self.gpu_decoder
        return None

    def _decode_cost(self, header: ImageHeader) -> int:
        """Pixels decoding ``header``'s image produces: full size with nvJPEG, which has no draft
        mode, so the budgets bound its GPU memory too."""
        if self._gpu_decoder_for(header) is not None:
            return header.width * header.height
        return header.decode_cost(self.decode.draft_size)

    def _read_headers(self, uploads: list[bytes]) -> list[ImageHeader]:
        headers = []
        for index, data in enumerate(uploads):
            try:
                headers.append(read_header(data, self.settings.max_image_pixels))
            except (ImageDecodeError, ImageTooLargeError) as exc:
                raise RejectedImageError(index, exc) from exc
        return headers

    async def _decode_one(
        self,
        index: int,
        data: bytes,
        header: ImageHeader,
        cost: int,
        ticket: Ticket,
        slots: asyncio.Semaphore,
    ) -> torch.Tensor:
        try:
            async with slots:
                if (gpu_decoder := self._gpu_decoder_for(header)) is not None:
                    on_gpu = await gpu_decoder.decode(EncodedJpeg(data, cost))
                    if on_gpu is not None:
                        return on_gpu
                decoded = await self.workers.pool.run(self.decode, data, cost=cost)
                self.workers.trimmer.note(cost)
                return decoded
        except (ImageDecodeError, ImageTooLargeError) as exc:
            raise RejectedImageError(index, exc) from exc
        finally:
            ticket.release_decode_pixels(cost)

    async def parse(self, function: Callable[..., T], *args: Any) -> T:
        """``function(*args)`` on the parse thread: work whose cost grows with what a client sent
        stays off the event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.workers.parse_thread, function, *args)

    async def _run_batch(self, images: list[torch.Tensor]) -> list[torch.Tensor]:
        started = time.perf_counter()
        outputs = await self.runner.run_batch(images)
        self.statistics.record_batch(len(images), time.perf_counter() - started)
        return outputs

    async def classify(
        self, images: list[torch.Tensor], timeout_s: float
    ) -> list[BatchedResult[torch.Tensor]]:
        """Class probabilities per image, batched with concurrent requests, within ``timeout_s``."""
        results = await self.batcher.submit(images, timeout_s=timeout_s)
        for result in results:
            self.gate.record_batch(result.batch_size, result.compute_s)
        return results

    async def stop(self, drain_timeout_s: float) -> None:
        """Finish queued work within ``drain_timeout_s``, then release this version's threads (the
        shared workers go on)."""
        await self.batcher.stop(drain_timeout_s)
        if self.gpu_decoder is not None:
            await self.gpu_decoder.stop(drain_timeout_s=0)
        # A daemon thread, not the loop's executor: asyncio.run joins that executor on exit, and
        # a close blocked behind a hung forward pass would hold the process forever.
        closed = threading.Event()

        def close_runner() -> None:
            self.runner.close()
            closed.set()

        threading.Thread(target=close_runner, name="runner-close", daemon=True).start()
        self.threads_stuck = not await asyncio.to_thread(closed.wait, RUNNER_STOP_TIMEOUT_S)
        if self.threads_stuck:
            logger.error(
                "the inference thread did not finish its batch within %ss; leaving it behind",
                RUNNER_STOP_TIMEOUT_S,
            )
