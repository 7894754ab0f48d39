"""Poll mode: a newer numbered version under ``MODEL_DIR`` goes live without a failed request.

Every ``MODEL_POLL_S`` the watcher looks for a version above the one served. One it finds is loaded
(its bundle checked: sha256, labels, preprocessing), warmed up at every batch size and only then
swapped in (``InferenceService.swap_in``): requests already admitted finish on the version they
began on, which stops once they have. A version that cannot serve (a broken bundle, labels whose
number changes under the same model name, a failed warm-up) is refused: logged, counted in
``resnet_serve_model_version_refusals_total``, and not tried again until its files change, while
the version already served goes on.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from app.serving.builder import RunnerLoader, build_version, load_runner
from app.serving.service import InferenceService, ServedVersion
from app.serving.versions import fingerprint, version_dirs

logger = logging.getLogger("resnet_serve")


class VersionRefusedError(Exception):
    """A newer version that must not replace the one served; the message says why."""


class VersionWatcher:
    """Looks for newer versions of ``service``'s model and swaps each in once it is warm."""

    def __init__(self, service: InferenceService, load: RunnerLoader = load_runner) -> None:
        self.service = service
        self.load = load
        self.model_dir = service.settings.model_dir
        self.refused: dict[int, tuple[tuple[str, int, int], ...]] = {}

    async def run(self) -> None:
        """Look every ``MODEL_POLL_S`` until cancelled."""
        while True:
            await asyncio.sleep(self.service.settings.model_poll_s)
            await self.check()

    async def check(self) -> None:
        """Swap in the newest version above the one served, unless it is refused."""
        if not self.service.state.ready:  # warming up or draining: nothing to swap now
            return
        found = version_dirs(self.model_dir)
        if not found or max(found) <= int(self.service.version):
            return
        number = max(found)
        bundle_dir = found[number]
        files = fingerprint(bundle_dir)
        if self.refused.get(number) == files:
            return
        try:
            newer = await self._warm(str(number), bundle_dir)
        except Exception as exc:
            self.refused[number] = files
            self.service.metrics.version_refusals.inc()
            reason = str(exc) or type(exc).__name__
            logger.error(
                "refused version %d of %s (still serving version %s): %s",
                number,
                self.service.manifest.name,
                self.service.version,
                reason,
            )
            return
        older = self.service.version
        metrics, runner = self.service.metrics, newer.pipeline.runner
        metrics.describe_model(newer.manifest, newer.version, runner.device, runner.precision)
        metrics.version_swaps.inc()
        logger.info("serving version %s of %s (was %s)", newer.version, newer.manifest.name, older)
        await self.service.swap_in(newer)

    async def _warm(self, version: str, bundle_dir: Path) -> ServedVersion:
        """The version loaded, checked against the one served, and warm; closed if refused."""
        settings = self.service.settings
        newer = await asyncio.to_thread(build_version, settings, version, bundle_dir, self.load)
        try:
            served, labels = self.service.manifest, newer.manifest.labels
            if newer.manifest.name == served.name and len(labels) != len(served.labels):
                raise VersionRefusedError(
                    f"its {len(newer.manifest.labels)} labels replace {len(served.labels)} "
                    f"under the same model name {served.name}; give it a new name"
                )
            await newer.pipeline.start()
        except BaseException:
            await newer.pipeline.stop(0)
            raise
        return newer
