"""What one served model is: ``ServedModel``, the versions of it that serve now (``ServedVersion``).

A request is admitted on one version and keeps it to its end, so versions can be swapped in and out
(``ServedModel.serve``) while older requests finish on the one they began on: a version that leaves
stops once its requests have ended. Each version has its own runner, batcher and decode pool
(``InferencePipeline``); each model has its own settings (its batch limits, from its
``config.json``) and its own Grad-CAM explainer, made from its latest version on first use.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from app.model.bundle import BundleManifest
from app.serving.errors import InvalidParameterError, ModelNotFoundError, NotReadyError
from app.serving.explainer import Explainer
from app.serving.model_config import ModelConfig
from app.serving.pipeline import InferencePipeline
from app.serving.versions import VERSION_NAME
from app.settings import Settings

DEFAULT_TOP_K = 5
RETIRE_POLL_S = 0.05  # how often a replaced version looks whether its requests have ended


async def wait_until_idle(busy: Callable[[], int], timeout_s: float) -> float:
    """Wait until ``busy()`` is 0, at most ``timeout_s``; returns what is left of the timeout."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while busy() and loop.time() < deadline:
        await asyncio.sleep(RETIRE_POLL_S)
    return max(0.0, deadline - loop.time())


def first_serving(models: dict[str, ServedModel]) -> ServedModel:
    """The first model by name that serves a version (else the first): what /model and the health
    report describe when no model is named."""
    ordered = [models[name] for name in sorted(models)]
    return next((model for model in ordered if model.versions), ordered[0])


@dataclass
class ServedVersion:
    """One loaded, warm version of a model: its pipeline and what is read from its bundle."""

    version: str
    pipeline: InferencePipeline
    settings: Settings
    requests: int = 0  # admitted on this version and not yet ended

    def __post_init__(self) -> None:
        manifest = self.pipeline.runner.bundle.manifest
        self.manifest: BundleManifest = manifest
        self.image_shape: tuple[int, int, int] = self.pipeline.runner.image_shape
        # The top score below which an answer abstains: the setting, else the bundle's.
        self.abstain_threshold: float = (
            self.settings.abstain_threshold
            if self.settings.abstain_threshold is not None
            else manifest.abstain_threshold
        )
        # Labels answered abstained whatever their score: the setting, else the bundle's.
        names = self.settings.abstain_label_names
        if names is None:
            names = frozenset(manifest.abstain_labels)
        self.abstain_labels: tuple[str, ...] = tuple(sorted(names))
        self.abstain_indices = frozenset(i for i, x in enumerate(manifest.labels) if x in names)

    @property
    def weight_bytes(self) -> int:
        return self.pipeline.runner.weight_bytes

    def top_k(self, requested: int | None) -> int:
        """``requested`` checked against the number of classes; the default is 5, or fewer."""
        num_classes = self.manifest.num_classes
        if requested is None:
            return min(DEFAULT_TOP_K, num_classes)
        if not 1 <= requested <= num_classes:
            raise InvalidParameterError(f"top_k must be 1..{num_classes}, got {requested}")
        return requested

    async def retire(self, timeout_s: float) -> None:
        """Once the requests admitted on this version have ended (at most ``timeout_s``), stop it."""
        left_s = await wait_until_idle(lambda: self.requests, timeout_s)
        await self.pipeline.stop(left_s)


@dataclass
class ServedModel:
    """A model served under ``name``, from ``folder``, with the versions its policy serves now.

    ``versions`` is empty only while the model is unloaded (``unloaded`` says why): its requests are
    refused as not ready and its memory is free until it is loaded again.
    """

    name: str
    folder: Path
    config: ModelConfig
    settings: Settings  # the server's, with this model's batch limits
    versions: dict[int, ServedVersion]
    unloaded: str = ""
    _explainer: asyncio.Future[Explainer] | None = field(default=None, repr=False)
    _retiring: dict[asyncio.Task[None], ServedVersion] = field(default_factory=dict, repr=False)
    _closing: set[asyncio.Task[None]] = field(default_factory=set, repr=False)  # old explainers

    @property
    def weight_bytes(self) -> int:
        """What its versions hold, those still finishing their requests after leaving included."""
        held = [*self.versions.values(), *self._retiring.values()]
        return sum(version.weight_bytes for version in held)

    @property
    def latest(self) -> ServedVersion:
        """The highest version served: what a request that names no version runs on."""
        latest = self._latest_or_none()
        if latest is None:
            raise NotReadyError(self.unloaded or f"model {self.name} has no version loaded")
        return latest

    def _latest_or_none(self) -> ServedVersion | None:
        return self.versions[max(self.versions)] if self.versions else None

    @property
    def pipelines(self) -> list[InferencePipeline]:
        return [version.pipeline for version in self.versions.values()]

    def version(self, version: str | None) -> ServedVersion:
        """The version a request names, or the latest when it names none (gRPC's unset string is
        empty): ``ModelNotFoundError`` when that version is not served, ``NotReadyError`` while the
        model is unloaded."""
        if not version:
            return self.latest
        served = self.versions.get(int(version)) if VERSION_NAME.fullmatch(version) else None
        if served is None:
            if not self.versions:
                raise NotReadyError(self.unloaded)
            listed = ", ".join(str(number) for number in sorted(self.versions))
            raise ModelNotFoundError(
                f"unknown model {self.name} version {version}; it serves version {listed}"
            )
        return served

    def serve(self, versions: dict[int, ServedVersion]) -> None:
        """Serve exactly ``versions`` (loaded and warm) from now on. The versions that leave
        finish the requests admitted on them, then stop, in the background; the explainer, made
        from the latest version, is dropped when that changes."""
        leaving = [v for number, v in self.versions.items() if versions.get(number) is not v]
        latest_before = self._latest_or_none()
        self.versions, self.unloaded = dict(versions), ""
        for older in leaving:
            retiring = asyncio.create_task(older.retire(self.settings.drain_timeout_s))
            self._retiring[retiring] = older
            retiring.add_done_callback(self._retiring.pop)
        if self._latest_or_none() is not latest_before:
            # Made from the version that was latest: the next explanation makes a new one, while
            # those queued on it finish first.
            made, self._explainer = self._explainer, None
            closing = asyncio.create_task(
                self._close_explainer(made, self.settings.drain_timeout_s)
            )
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)

    async def unload(self, reason: str) -> None:
        """Serve no version until loaded again; returns once what was admitted has finished (at
        most ``DRAIN_TIMEOUT_S``) and the memory is free."""
        self.serve({})
        self.unloaded = reason
        await asyncio.gather(*self._retiring)

    async def stop(self, timeout_s: float) -> None:
        """Stop every version: queued work finished within ``timeout_s``, threads released."""
        await asyncio.gather(*(pipeline.stop(timeout_s) for pipeline in self.pipelines))
        await asyncio.gather(*self._retiring, *self._closing)  # what was swapped out, finishing
        made, self._explainer = self._explainer, None
        await self._close_explainer(made, 0.0)

    async def explainer(self) -> Explainer:
        """The Grad-CAM explainer of the latest version, made on first use: its model copy costs
        memory (and a GPU's, on one) that a server nobody asks to explain should not pay.
        Concurrent first calls share one; a failed copy is retried by the next call."""
        runner = self.latest.pipeline.runner
        if self._explainer is None:
            max_pending = self.settings.explain_max_pending
            self._explainer = asyncio.ensure_future(
                asyncio.to_thread(Explainer, runner, max_pending)
            )
        making = self._explainer
        try:
            return await asyncio.shield(making)  # one caller's timeout must not cancel it for all
        except Exception:
            if making.done() and self._explainer is making:
                self._explainer = None
            raise

    @staticmethod
    async def _close_explainer(made: asyncio.Future[Explainer] | None, timeout_s: float) -> None:
        """Close ``made`` once its queued explanations have ended (at most ``timeout_s``); those
        still queued then are dropped."""
        if made is None or made.cancelled():
            return
        try:
            explainer = await made  # one still being made is waited for, then closed too
        except Exception:
            return  # its making failed: nothing to close
        await wait_until_idle(lambda: explainer.pending, timeout_s)
        await asyncio.to_thread(explainer.close)  # the one computing ends; queued ones drop
