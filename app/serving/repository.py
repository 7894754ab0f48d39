"""The served models' folders and versions, as Triton's model repository has them: polled, or loaded
and unloaded on request.

Each model folder holds one bundle (version 1) or numbered versions (``app.serving.versions``), and
its version policy says which serve (``app.serving.model_config``). Changes are found by polling
(``MODEL_POLL_S``: a new version, or in a repository a new model folder) or on an explicit ``load``
(Triton's repository extension). A version is loaded (its bundle checked: sha256, labels,
preprocessing; its weights within ``MODEL_MEMORY_MB`` and the device's memory), warmed up at every
batch size and only then swapped in (``ServedModel.serve``): requests already admitted finish on
the version they began on, which stops once they have. A version that cannot serve (a broken
bundle, labels whose number changes under the same model name, one that does not fit, a failed
warm-up) is refused: logged, counted in ``resnet_serve_model_version_refusals_total``, and not tried
again until its files change, while what is served goes on. ``unload`` stops serving a model and
frees its memory until ``load``.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from app.serving.builder import model_settings, repository_root
from app.serving.errors import InvalidInputError, ModelNotFoundError
from app.serving.model_config import ModelConfig
from app.serving.served_model import ServedModel, ServedVersion
from app.serving.service import InferenceService
from app.serving.versions import (
    MODEL_NAME,
    available_versions,
    fingerprint,
    is_model_folder,
    repository_models,
    served_versions,
)
from app.settings import Settings

logger = logging.getLogger("resnet_serve")


class VersionRefusedError(InvalidInputError):
    """A version that must not serve; the message says why (400 on load)."""


@dataclass(frozen=True)
class VersionEntry:
    """One version in the repository index: Triton's ``READY`` or ``UNAVAILABLE``, and why."""

    name: str
    version: str
    state: str
    reason: str = ""


@dataclass(frozen=True)
class Refusal:
    """Why a version (0: the model itself) was refused, and its files then: polling tries it
    again only once they change; an explicit load tries it again at once."""

    files: tuple[tuple[str, int, int], ...]
    reason: str


class ModelRepository:
    """The models of ``service`` and their versions: the index, polling, explicit load, unload."""

    def __init__(self, service: InferenceService) -> None:
        self.service = service
        self.root = repository_root(service.settings)  # None: a repository of one model
        self.refused: dict[tuple[str, int], Refusal] = {}
        self._lock = asyncio.Lock()  # one load at a time, polled or asked for

    def folders(self) -> dict[str, Path]:
        """Every model folder, by the name it is served under: those served, and in a repository
        any other model folder it holds now."""
        found = {name: model.folder for name, model in self.service.models.items()}
        if self.root is not None:
            for name, folder in repository_models(self.root).items():
                found.setdefault(name, folder)
        return dict(sorted(found.items()))

    def folder(self, name: str) -> Path | None:
        """The folder of model ``name``: the one it is served from, else in a repository the
        model folder of that name (one look at it, not a listing of the repository)."""
        if name in self.service.models:
            return self.service.models[name].folder
        if self.root is None or not MODEL_NAME.fullmatch(name):
            return None
        candidate = self.root / name
        return candidate if candidate.is_dir() and is_model_folder(candidate) else None

    def index(self, ready_only: bool = False) -> list[VersionEntry]:
        """Every version of every model, those served ``READY``."""
        entries = []
        for name, folder in self.folders().items():
            model = self.service.models.get(name)
            served = set(model.versions) if model is not None else set()
            found = available_versions(folder) if folder.is_dir() else {}
            numbers = sorted(set(found) | served)
            for number in numbers:
                if model is not None and number in model.versions:
                    entries.append(VersionEntry(name, str(number), "READY"))
                    continue
                if (name, number) in self.refused:
                    reason = self.refused[name, number].reason
                elif model is not None and model.unloaded:
                    reason = "unloaded"
                elif model is not None:
                    reason = "not selected by the version policy"
                else:
                    reason = "not loaded"
                entries.append(VersionEntry(name, str(number), "UNAVAILABLE", reason))
        return [e for e in entries if e.state == "READY"] if ready_only else entries

    async def run_polling(self) -> None:
        """Look for new versions and models every ``MODEL_POLL_S`` until cancelled; a model
        unloaded on request stays unloaded."""
        while True:
            await asyncio.sleep(self.service.settings.model_poll_s)
            if not self.service.state.ready:  # not while warming up or draining
                continue
            for name in self.folders():
                try:
                    await self.check(name)
                except VersionRefusedError:
                    pass  # logged and counted once, when refused
                except Exception:  # a folder gone between the look and the load, or worse
                    logger.exception("polling %s failed; polling goes on", name)

    async def load(self, name: str) -> None:
        """Triton's ``load``: serve the versions of ``name`` its policy selects, loading what is
        not served yet (a model unloaded, or new in the repository); ``VersionRefusedError`` when
        one of them cannot serve (what is served goes on)."""
        if self.folder(name) is None:
            name = self.service.model(name).name  # ModelNotFoundError, naming the models served
        # Asked for, not polled: what was refused is tried again (a model refused for memory
        # may fit once another is unloaded).
        for refused in [key for key in self.refused if key[0] == name]:
            del self.refused[refused]
        await self.check(name, reload=True)

    async def unload(self, name: str) -> None:
        """Triton's ``unload``: stop serving ``name`` until it is loaded again; its memory is freed
        once the requests admitted on it have ended."""
        model = self.service.model(name)
        async with self._lock:
            load_path = f"/v2/repository/models/{model.name}/load"
            await model.unload(f"model {model.name} is unloaded; POST {load_path} serves it")
            self.service.describe()
            logger.info("unloaded %s", model.name)

    async def check(self, name: str, reload: bool = False) -> None:
        """Serve the versions of ``name`` its policy selects now, loading the new ones; a model
        unloaded on request only with ``reload``. ``VersionRefusedError`` if one is refused."""
        async with self._lock:
            folder = self.folder(name)
            if folder is None:
                raise ModelNotFoundError(f"unknown model {name}")
            model = self.service.models.get(name)
            if model is not None and model.unloaded and not reload:
                return
            try:
                if not folder.is_dir():
                    raise FileNotFoundError(f"{folder}: the model folder is gone")
                config, settings = model_settings(self.service.settings, folder)
                wanted = served_versions(folder, config.version_policy)
            except Exception as exc:  # a config.json or a folder that cannot serve
                known = self.refused.get((name, 0))
                if known is not None and known.reason == str(exc):  # said once, not every poll
                    raise VersionRefusedError(f"model {name} was refused: {known.reason}") from None
                self._refuse(name, 0, (), exc)
            self.refused.pop((name, 0), None)
            # Versions served go on unless the batch limits they were built with changed.
            served = model.versions if model is not None and model.settings == settings else {}
            keep = {n: served[n] for n in wanted if n in served}
            refusals = []
            loaded: dict[int, ServedVersion] = {}
            for number in sorted(set(wanted) - set(keep), reverse=True):
                try:
                    held = sum(version.weight_bytes for version in loaded.values())
                    loaded[number] = await self._warm(name, number, wanted[number], settings, held)
                except VersionRefusedError as exc:
                    refusals.append(exc)
            if model is not None and not loaded and model.config != config:
                model.config = config  # a new policy that keeps the same versions
            if loaded or (model is not None and set(keep) != set(model.versions)):
                self._serve(name, folder, config, settings, keep | loaded)
            if refusals:
                raise refusals[0]

    def _serve(
        self,
        name: str,
        folder: Path,
        config: ModelConfig,
        settings: Settings,
        versions: dict[int, ServedVersion],
    ) -> None:
        """Swap ``versions`` in as what ``name`` serves (or add the model), then say so."""
        model = self.service.models.get(name)
        before = sorted(model.versions) if model is not None else []
        if not versions:  # every version refused: what was served goes on
            return
        if model is None:
            self.service.models[name] = ServedModel(name, folder, config, settings, versions)
        else:
            model.config, model.settings = config, settings
            model.serve(versions)
        self.service.describe()
        self.service.metrics.version_swaps.labels(name).inc()
        logger.info(
            "serving %s version %s (was %s)",
            name,
            ", ".join(map(str, sorted(versions))),
            ", ".join(map(str, before)) or "none",
        )

    def _refuse(
        self, name: str, number: int, files: tuple[tuple[str, int, int], ...], exc: BaseException
    ) -> NoReturn:
        """Remember, count and log why version ``number`` of ``name`` cannot serve, and raise."""
        reason = str(exc) or type(exc).__name__
        self.refused[name, number] = Refusal(files, reason)
        self.service.metrics.version_refusals.labels(name).inc()
        shown = f"{name} version {number}" if number else f"model {name}"
        model = self.service.models.get(name)
        served = ", ".join(map(str, sorted(model.versions))) if model is not None else ""
        going_on = f"still serving version {served}" if served else "not served"
        logger.error("refused %s (%s): %s", shown, going_on, reason)
        raise VersionRefusedError(f"{shown} was refused: {reason}") from None

    async def _warm(
        self, name: str, number: int, bundle_dir: Path, settings: Settings, loading_bytes: int
    ) -> ServedVersion:
        """Version ``number`` of ``name`` loaded, checked against what is served, and warm,
        within the memory limit beside what is served and ``loading_bytes`` being loaded with it;
        ``VersionRefusedError`` (closed again) if it cannot serve."""
        files = fingerprint(bundle_dir)
        known = self.refused.get((name, number))
        if known is not None and known.files == files:
            raise VersionRefusedError(f"{name} version {number} was refused: {known.reason}")
        held = self.service.weight_bytes + loading_bytes
        try:
            newer = await asyncio.to_thread(
                self.service.loader.version, settings, str(number), bundle_dir, held
            )
        except Exception as exc:
            self._refuse(name, number, files, exc)
        try:
            self._check_labels(name, newer)
            await newer.pipeline.start()
        except BaseException as exc:
            await newer.pipeline.stop(0)
            if not isinstance(exc, Exception):
                raise
            self._refuse(name, number, files, exc)
        self.refused.pop((name, number), None)
        return newer

    def _check_labels(self, name: str, newer: ServedVersion) -> None:
        model = self.service.models.get(name)
        if model is None or not model.versions:
            return
        served, labels = model.latest.manifest, newer.manifest.labels
        if newer.manifest.name == served.name and len(labels) != len(served.labels):
            raise VersionRefusedError(
                f"its {len(labels)} labels replace {len(served.labels)} "
                f"under the same model name {served.name}; give it a new name"
            )
