"""CUDA graphs for the forward pass: one captured graph per padded batch size ("bucket").

A ResNet-18 forward pass at small batches is a few hundred short kernels; launching them one by one
from Python costs more than running them. A captured graph replays all of them with one launch. A
graph has fixed shapes and fixed memory, so batches are padded up to the next bucket and each bucket
owns a static input buffer that a batch is copied into before its graph replays.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

WARM_UP_ITERATIONS = 3  # cuDNN autotuning and lazy allocations must happen before capture


def batch_buckets(max_batch_size: int) -> list[int]:
    """Powers of two below ``max_batch_size``, then ``max_batch_size`` itself.

    At most half of a padded batch is padding, and there are only log2(max) graphs to capture.
    """
    buckets, size = [], 1
    while size < max_batch_size:
        buckets.append(size)
        size *= 2
    return [*buckets, max_batch_size]


def bucket_for(size: int, buckets: Sequence[int]) -> int:
    """The smallest bucket that holds ``size`` items."""
    for bucket in buckets:
        if bucket >= size:
            return bucket
    raise ValueError(f"batch of {size} is larger than the largest bucket {buckets[-1]}")


class CapturedForward:
    """``compute(uint8 batch on the device) -> probabilities``, replayed from a graph per bucket."""

    def __init__(
        self,
        compute: Callable[[torch.Tensor], torch.Tensor],
        buckets: Sequence[int],
        image_shape: tuple[int, int, int],
        device: torch.device,
    ) -> None:
        self.buckets = list(buckets)
        self._inputs: dict[int, torch.Tensor] = {}
        self._outputs: dict[int, torch.Tensor] = {}
        self._graphs: dict[int, torch.cuda.CUDAGraph] = {}
        # The pool, the capture stream and the graphs belong to the current device: make it
        # ``device`` even on a thread that was never bound to it.
        with torch.cuda.device(device):
            self._capture(compute, image_shape, device)
        torch.cuda.synchronize(device)

    def _capture(
        self,
        compute: Callable[[torch.Tensor], torch.Tensor],
        image_shape: tuple[int, int, int],
        device: torch.device,
    ) -> None:
        pool = torch.cuda.graph_pool_handle()  # buckets share one memory pool: they never overlap
        # Largest first, so the smaller graphs reuse the pool's blocks instead of growing it.
        for bucket in sorted(self.buckets, reverse=True):
            static_input = torch.zeros((bucket, *image_shape), dtype=torch.uint8, device=device)
            side = torch.cuda.Stream(device)
            side.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(side), torch.inference_mode():
                for _ in range(WARM_UP_ITERATIONS):
                    compute(static_input)
            torch.cuda.current_stream(device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.inference_mode(), torch.cuda.graph(graph, pool=pool):
                static_output = compute(static_input)
            self._inputs[bucket], self._outputs[bucket] = static_input, static_output
            self._graphs[bucket] = graph

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        """Probabilities for the ``len(batch)`` images of ``batch`` (uint8, host or device).

        The returned view aliases the bucket's static output: the caller copies it out before the
        next call on the same stream (stream order makes that copy see this replay's values).
        """
        size = batch.shape[0]
        bucket = bucket_for(size, self.buckets)
        self._inputs[bucket][:size].copy_(batch, non_blocking=True)
        # Rows past `size` keep an earlier batch's pixels: in eval mode no row affects another.
        self._graphs[bucket].replay()
        return self._outputs[bucket][:size]
