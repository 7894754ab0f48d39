"""The machine and software a run measured, for the report's first line."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path

import torch

PACKAGES = ("torch", "torchvision", "fastapi", "uvicorn", "litserve", "aiohttp", "pillow")


def resolve_device(requested: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``."""
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda, but CUDA is not available here")
    return requested


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def describe() -> dict[str, str | int]:
    """CPU model, core count, GPU name and the versions that matter to the numbers."""
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count() or 1,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU",
        "python": platform.python_version(),
        **{package: _version(package) for package in PACKAGES},
    }


def one_line(machine: dict[str, str | int]) -> str:
    """``describe()`` as the sentence the report starts with."""
    versions = ", ".join(f"{p} {machine[p]}" for p in PACKAGES)
    return (
        f"{machine['cpu']}, {machine['cores']} cores, {machine['gpu']}; "
        f"Python {machine['python']}, {versions}"
    )
