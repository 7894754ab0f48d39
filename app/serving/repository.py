"""The served model's versions, as Triton's model repository has them: polled, or loaded and
unloaded on request.

``MODEL_DIR`` is one bundle (version 1) or a folder of numbered versions (``app.serving.versions``).
A newer version is found by polling (``MODEL_POLL_S``) or on an explicit ``load`` (Triton's
repository extension); it is loaded (its bundle checked: sha256, labels, preprocessing), warmed up
at every batch size and only then swapped in (``InferenceService.swap_in``): requests already
admitted finish on the version they began on, which stops once they have. A version that cannot
serve (a broken bundle, labels whose number changes under the same model name, a failed warm-up) is
refused: logged, counted in ``resnet_serve_model_version_refusals_total``, and not tried again until
its files change, while the version already served goes on. ``unload`` stops serving the model
(readiness turns 503, inference is refused) until ``load``; its memory stays held until a newer
version replaces it or the process ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path

from app.serving.builder import RunnerLoader, build_version, load_runner
from app.serving.errors import InvalidInputError
from app.serving.service import InferenceService, ServedVersion
from app.serving.state import Phase
from app.serving.versions import fingerprint, is_versioned, version_dirs

logger = logging.getLogger("resnet_serve")


class VersionRefusedError(InvalidInputError):
    """A version that must not replace the one served; the message says why (400 on load)."""


@dataclass(frozen=True)
class VersionEntry:
    """One version in the repository index: Triton's ``READY`` or ``UNAVAILABLE``, and why."""

    name: str
    version: str
    state: str
    reason: str = ""


@dataclass(frozen=True)
class Refusal:
    files: tuple[tuple[str, int, int], ...]
    reason: str


class ModelRepository:
    """The versions of ``service``'s model: the index, polling, explicit load and unload."""

    def __init__(self, service: InferenceService, load: RunnerLoader = load_runner) -> None:
        self.service = service
        self.load_runner = load
        self.model_dir = service.settings.model_dir
        self.refused: dict[int, Refusal] = {}
        self._lock = asyncio.Lock()  # one load at a time, polled or asked for

    def index(self, ready_only: bool = False) -> list[VersionEntry]:
        """Every version the repository holds, the served one ``READY`` unless unloaded."""
        name, served = self.service.manifest.name, self.service.version
        unloaded = self.service.state.phase is Phase.UNLOADED
        found = (
            version_dirs(self.model_dir) if is_versioned(self.model_dir) else {1: self.model_dir}
        )
        entries = []
        for number in sorted(found):
            version = str(number)
            if version == served and not unloaded:
                entries.append(VersionEntry(name, version, "READY"))
            elif version == served:
                entries.append(VersionEntry(name, version, "UNAVAILABLE", "unloaded"))
            elif number in self.refused:
                entries.append(
                    VersionEntry(name, version, "UNAVAILABLE", self.refused[number].reason)
                )
            else:
                reason = "older than the served version" if number < int(served) else "not loaded"
                entries.append(VersionEntry(name, version, "UNAVAILABLE", reason))
        return [e for e in entries if e.state == "READY"] if ready_only else entries

    async def run_polling(self) -> None:
        """Look for a newer version every ``MODEL_POLL_S`` until cancelled."""
        while True:
            await asyncio.sleep(self.service.settings.model_poll_s)
            if self.service.state.ready:  # not while warming up, unloaded or draining
                with contextlib.suppress(VersionRefusedError):  # logged and counted once
                    await self.check()

    async def load(self, name: str) -> None:
        """Triton's ``load``: serve the model again if it was unloaded, on its newest version;
        ``VersionRefusedError`` when that version cannot serve (the served one goes on, loaded)."""
        self.service.check_model(name)
        try:
            await self.check()
        finally:  # a refused newer version leaves the served one serving, loaded
            self.service.state.mark_loaded()

    def unload(self, name: str) -> None:
        """Triton's ``unload``: stop serving the model until it is loaded again."""
        self.service.check_model(name)
        load_path = f"/v2/repository/models/{name}/load"
        self.service.state.mark_unloaded(f"model {name} is unloaded; POST {load_path} serves it")

    async def check(self) -> None:
        """Swap in the newest version above the one served; ``VersionRefusedError`` if refused."""
        async with self._lock:
            found = version_dirs(self.model_dir)
            if not found or max(found) <= int(self.service.version):
                return
            number = max(found)
            bundle_dir = found[number]
            files = fingerprint(bundle_dir)
            known = self.refused.get(number)
            if known is not None and known.files == files:
                raise VersionRefusedError(f"version {number} was refused: {known.reason}")
            try:
                newer = await self._warm(str(number), bundle_dir)
            except Exception as exc:
                reason = str(exc) or type(exc).__name__
                self.refused[number] = Refusal(files, reason)
                self.service.metrics.version_refusals.inc()
                logger.error(
                    "refused version %d of %s (still serving version %s): %s",
                    number,
                    self.service.manifest.name,
                    self.service.version,
                    reason,
                )
                raise VersionRefusedError(f"version {number} was refused: {reason}") from None
            older = self.service.version
            metrics, runner = self.service.metrics, newer.pipeline.runner
            metrics.describe_model(newer.manifest, newer.version, runner.device, runner.precision)
            metrics.version_swaps.inc()
            logger.info(
                "serving version %s of %s (was %s)", newer.version, newer.manifest.name, older
            )
            await self.service.swap_in(newer)

    async def _warm(self, version: str, bundle_dir: Path) -> ServedVersion:
        """The version loaded, checked against the one served, and warm; closed if refused."""
        settings = self.service.settings
        newer = await asyncio.to_thread(
            build_version, settings, version, bundle_dir, self.load_runner
        )
        try:
            served, labels = self.service.manifest, newer.manifest.labels
            if newer.manifest.name == served.name and len(labels) != len(served.labels):
                raise VersionRefusedError(
                    f"its {len(labels)} labels replace {len(served.labels)} "
                    f"under the same model name {served.name}; give it a new name"
                )
            await newer.pipeline.start()
        except BaseException:
            await newer.pipeline.stop(0)
            raise
        return newer
