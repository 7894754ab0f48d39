"""A model's own serving configuration in the repository: ``<model>/config.json``, optional.

Triton keeps a ``config.pbtxt`` beside a model's version folders; this is its counterpart for what
differs between the models one server serves: the batch limits (a large model may batch less than
a small one) and the version policy (which of its versions serve). Anything it leaves out comes
from the server's settings, and a model folder without the file serves its latest version with
them. A file that does not parse, or names a field this file does not have, stops the model with
one sentence naming the file.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from app.model.bundle import BundleError
from app.settings import Settings

CONFIG_FILE = "config.json"


class LatestPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    num_versions: int = Field(1, ge=1, description="How many of the highest versions serve.")


class SpecificPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    versions: list[int] = Field(min_length=1, description="The version numbers that serve.")


class VersionPolicy(BaseModel):
    """Triton's ``version_policy``: exactly one of ``latest``, ``specific`` or ``all``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    latest: LatestPolicy | None = None
    specific: SpecificPolicy | None = None
    all: dict[str, object] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> VersionPolicy:
        kinds = [k for k in ("latest", "specific", "all") if getattr(self, k) is not None]
        if len(kinds) > 1:
            raise ValueError(f"give one of latest, specific or all, not {' and '.join(kinds)}")
        return self

    def select(self, available: list[int]) -> list[int]:
        """The versions of ``available`` this policy serves, highest first."""
        found = sorted(available, reverse=True)
        if self.all is not None:
            return found
        if self.specific is not None:
            wanted = set(self.specific.versions)
            return [number for number in found if number in wanted]
        return found[: (self.latest or LatestPolicy()).num_versions]


class ModelConfig(BaseModel):
    """What one model's ``config.json`` may say; every field is optional."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    max_batch_size: int | None = Field(None, ge=1, le=1024)
    max_batch_delay_ms: float | None = Field(None, ge=0, le=1000)
    version_policy: VersionPolicy = VersionPolicy()

    def apply(self, settings: Settings) -> Settings:
        """``settings`` with this model's batch limits in place of the server's."""
        changed = {
            name: value
            for name in ("max_batch_size", "max_batch_delay_ms")
            if (value := getattr(self, name)) is not None
        }
        return settings.model_copy(update=changed) if changed else settings


def read_model_config(model_dir: Path) -> ModelConfig:
    """``model_dir``'s ``config.json``, or the defaults when it has none: ``BundleError`` when it
    cannot be read or says what it may not."""
    path = model_dir / CONFIG_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ModelConfig()
    except OSError as exc:
        raise BundleError(f"{path}: cannot be read ({exc.strerror})") from None
    try:
        return ModelConfig.model_validate(json.loads(text))
    except json.JSONDecodeError as exc:
        raise BundleError(f"{path}: not JSON ({exc.msg} at line {exc.lineno})") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the file"
        raise BundleError(f"{path}: {where}: {first['msg']}") from None
