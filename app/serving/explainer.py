"""Grad-CAM for one image: which part of the model's input crop made it answer a class.

``Explainer`` keeps its own fp32 copy of the served model, read from the bundle (the serving copy
may be bf16), so the serving model never carries a hook, a gradient or a graph, and runs on its own
single thread beside the batcher, never in it.
At most ``max_pending`` explanations are in progress, counted from the request's arrival (its
upload and decoding included, through ``reserve``) until the thread is done with it; beyond that
``ExplainerBusyError`` before the body is read, so a flood of /explain can take neither more than
one thread from /predict nor the decode pool on the way there.

Grad-CAM (Selvaraju et al., 2017) on the last stage: the activations of ``layer4`` weighted by the
spatial mean of the target logit's gradient with respect to them, summed over channels, ReLU,
upsampled bilinearly to the input size and scaled to 0..1. No FastAPI here.
"""

from __future__ import annotations

import asyncio
import functools
import io
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn
from torch.nn import functional

from app.model.bundle import BundleError, load_bundle
from app.model.devices import bind_thread
from app.serving.errors import DrainingError, InvalidParameterError
from app.serving.numbers import plain_count
from app.serving.runner import ModelRunner

DEFAULT_MAX_PENDING = 3  # one computing, two waiting behind it (the explain_max_pending default)
OVERLAY_ALPHA = 0.5


class ExplainerBusyError(Exception):
    """``max_pending`` explanations are already queued or running; retry in ``retry_after_s``."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class GradCam:
    """A Grad-CAM map for one class of one image, and the crop it was computed on."""

    label: str
    index: int
    score: float  # softmax probability of ``index`` from the explainer's fp32 copy
    cam: Tensor  # float32 (S, S) in 0..1, on the CPU
    pixels: Tensor  # uint8 (3, S, S): exactly what the model saw, on the CPU

    def overlay_png(self, alpha: float = OVERLAY_ALPHA) -> bytes:
        """The map in the jet colour map blended over the crop, as PNG bytes (S x S)."""
        heat = _jet()[(self.cam.numpy() * 255).round().astype(np.intp)]
        image = self.pixels.permute(1, 2, 0).numpy().astype(np.float32)
        blended = (1 - alpha) * image + alpha * heat
        buffer = io.BytesIO()
        Image.fromarray(blended.round().astype(np.uint8)).save(buffer, "PNG")
        return buffer.getvalue()


@functools.cache
def _jet() -> np.ndarray:
    """Matplotlib's jet as a (256, 3) float table; imported on first use (0.3 s), not at start-up."""
    from matplotlib import colormaps

    return colormaps["jet"].resampled(256)(np.arange(256))[:, :3].astype(np.float32) * 255


def target_index(labels: Sequence[str], target: str | None) -> int | None:
    """The class index ``target`` names (a label, else an index); None explains the top class.

    A label wins over an index, so a model whose labels are digits is asked by label.
    """
    if target is None:
        return None
    if target in labels:
        return labels.index(target)
    index = plain_count(target)
    if index is not None and index < len(labels):
        return index
    raise InvalidParameterError(
        f"target {target!r} is neither a label of this model nor an index 0..{len(labels) - 1}"
    )


def grad_cam(activations: Tensor, gradients: Tensor, size: int) -> Tensor:
    """(1, C, h, w) activations and their gradients -> float32 (size, size) map in 0..1."""
    weights = gradients.mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((weights * activations).sum(dim=1, keepdim=True))
    cam = functional.interpolate(cam, size=(size, size), mode="bilinear", align_corners=False)[0, 0]
    cam -= cam.min()
    peak = cam.max()
    # A map with no positive evidence (flat) is all zeros rather than 0/0.
    return cam / peak if peak > 0 else torch.zeros_like(cam)


def _explainer_thread(device: torch.device) -> ThreadPoolExecutor:
    def set_up_thread() -> None:
        bind_thread(device)
        if device.type == "cpu":
            # One core, so an explanation slows /predict by at most that core (per thread in
            # OpenMP: the serving threads keep theirs).
            torch.set_num_threads(1)

    return ThreadPoolExecutor(1, "explain", initializer=set_up_thread)


def _fp32_copy(runner: ModelRunner) -> nn.Module:
    """The served bundle's model in float32 on the runner's device, read from its folder."""
    bundle = load_bundle(runner.bundle.directory, device=runner.device)
    if bundle.manifest != runner.bundle.manifest:
        raise BundleError(f"{bundle.directory}: the bundle changed on disk since it was loaded")
    return bundle.model


class ExplainSlot:
    """One place in the explainer's bound, from a request's arrival until its explanation is done.

    Freed when the request's ``with`` block ends, unless its explanation went to the thread: then
    when the thread is done with it, not when its caller leaves. A pass in progress cannot be
    stopped, and callers that time out must not pile work up behind it.
    """

    def __init__(self, release: Callable[[], None]) -> None:
        self._release = release
        self._handed_over = False
        self._freed = False
        self._lock = threading.Lock()  # freed from the thread's callback or the event loop

    def hand_over(self, job: Future) -> None:
        """The job holds the place from now on; it frees it when it ends (or is cancelled)."""
        self._handed_over = True
        job.add_done_callback(lambda _: self._free())

    def _free(self) -> None:
        with self._lock:
            if self._freed:
                return
            self._freed = True
        self._release()

    def __enter__(self) -> ExplainSlot:
        return self

    def __exit__(self, *_: object) -> None:
        if not self._handed_over:
            self._free()


class Explainer:
    """Grad-CAM with a private fp32 copy of the runner's model on its device, on one thread.

    Making one reads the bundle again (blocking): the service makes it off the event loop.
    """

    def __init__(self, runner: ModelRunner, max_pending: int = DEFAULT_MAX_PENDING) -> None:
        if max_pending < 1:
            raise ValueError(f"max_pending must be at least 1, got {max_pending}")
        self.labels = runner.labels
        self.device = runner.device
        self.normalize = runner.normalize
        self.temperature = runner.temperature  # the score is the one /predict gives
        self.input_size = runner.image_shape[-1]
        self.max_pending = max_pending
        self._thread = _explainer_thread(self.device)
        try:
            self.model: nn.Module = self._thread.submit(_fp32_copy, runner).result()
        except BaseException:
            self._thread.shutdown(wait=False)
            raise
        # Gradients are wanted for the activations only, never for the weights.
        self.model.requires_grad_(False)
        self._lock = threading.Lock()  # _pending is released from the thread's callback
        self._pending = 0
        self._seconds = 0.0  # moving average of one explanation, for Retry-After

    @property
    def pending(self) -> int:
        """Explanations in progress: reserved, queued or running on the thread."""
        return self._pending

    def check_capacity(self) -> None:
        """``ExplainerBusyError`` if the queue is full: cheap, for a refusal before the body is read."""
        if self._pending >= self.max_pending:
            retry_after_s = max(self._seconds, 0.05) * self._pending
            raise ExplainerBusyError(
                f"{self._pending} explanations are already queued or running; retry shortly",
                retry_after_s,
            )

    def reserve(self) -> ExplainSlot:
        """A place among the ``max_pending``, taken at a request's arrival; raises
        ``ExplainerBusyError`` when none is left. Use it as a context manager around the request."""
        with self._lock:
            self.check_capacity()
            self._pending += 1
        return ExplainSlot(self._release)

    async def explain(
        self, pixels: Tensor, target: int | None = None, slot: ExplainSlot | None = None
    ) -> GradCam:
        """Grad-CAM of uint8 ``pixels`` (3, S, S) for class ``target`` (the top class if None),
        in ``slot`` (reserved here when None, raising ``ExplainerBusyError`` when none is left).

        Cancelling drops a queued explanation; one already computing finishes and keeps its
        place until it has.
        """
        if slot is None:
            with self.reserve() as slot:
                return await self.explain(pixels, target, slot)
        try:
            job = self._thread.submit(self._timed, pixels, target)
        except RuntimeError:  # closed: the server is shutting down
            raise DrainingError("server is shutting down") from None
        slot.hand_over(job)
        return await asyncio.wrap_future(job)  # cancelling it cancels the job if not yet started

    def _release(self) -> None:
        with self._lock:
            self._pending -= 1

    def _timed(self, pixels: Tensor, target: int | None) -> GradCam:
        started = time.perf_counter()
        explanation = self.compute(pixels, target)
        seconds = time.perf_counter() - started
        self._seconds = seconds if not self._seconds else 0.8 * self._seconds + 0.2 * seconds
        return explanation

    def compute(self, pixels: Tensor, target: int | None = None) -> GradCam:
        """``explain`` on the calling thread (blocking)."""
        batch = self.normalize(pixels.unsqueeze(0).to(self.device))
        captured: list[Tensor] = []

        def keep(_: nn.Module, __: object, output: Tensor) -> Tensor:
            # The stage's output becomes a leaf: the graph starts here, so backward runs
            # through the pool and the head only, and nothing before it records a graph.
            leaf = output.detach().requires_grad_(True)
            captured.append(leaf)
            return leaf

        hook = self.model.get_submodule("layer4").register_forward_hook(keep)
        try:
            with torch.enable_grad():
                logits = self.model(batch)
        finally:
            hook.remove()
        index = int(logits[0].argmax()) if target is None else target
        (gradients,) = torch.autograd.grad(logits[0, index], captured[0])
        cam = grad_cam(captured[0].detach(), gradients, self.input_size)
        score = torch.softmax(logits.detach()[0] / self.temperature, dim=0)[index].item()
        return GradCam(self.labels[index], index, score, cam.cpu(), pixels.cpu())

    def close(self) -> None:
        """Finish the explanation in progress and drop the queued ones."""
        self._thread.shutdown(wait=True, cancel_futures=True)
