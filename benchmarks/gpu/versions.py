"""What a GPU check measured on: the machine and its torch stack, beside the versions the lock pins.

The check runs on the GPU machine's own torch and torchvision rather than installing the locked
ones: the CUDA wheels of torch alone weigh gigabytes, and what may be carried to that machine is
64 MiB in all (it has no network). So the report says which versions it measured, and where they
are not the lock's, says that in so many words: numbers from another torch are that torch's.

    python -m benchmarks.gpu.versions > versions.json
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from benchmarks import machine

LOCK = Path(__file__).resolve().parents[2] / "requirements" / "runtime.lock"
LOCKED = ("torch", "torchvision")  # the packages whose build decides the kernels measured


def locked_versions(lock: Path = LOCK) -> dict[str, str]:
    """``{"torch": "2.15.0", ...}`` from the ``name==version`` lines of a pip-compile lock."""
    pins = {}
    for line in lock.read_text().splitlines():
        name, sep, rest = line.partition("==")
        if sep and name in LOCKED:
            pins[name] = rest.split()[0]
    return pins


def release(version: str) -> str:
    """``2.15.0+cu132`` -> ``2.15.0``: the local build tag names the CUDA flavour, not the release."""
    return version.split("+", 1)[0]


def differences(measured: dict[str, str | int], pins: dict[str, str]) -> list[str]:
    """One phrase per locked package whose measured release is not the pinned one."""
    return [
        f"{name} {measured.get(name)} (lock: {pin})"
        for name, pin in pins.items()
        if release(str(measured.get(name))) != pin
    ]


def describe() -> dict:
    """``benchmarks.machine.describe()`` plus CUDA (whether it is usable here, torch's CUDA and
    cuDNN versions), the lock's pins and the differences."""
    measured: dict = machine.describe() | {
        "cuda_available": torch.cuda.is_available(),
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
    }
    pins = locked_versions()
    return measured | {"lock": pins, "differs_from_lock": differences(measured, pins)}


if __name__ == "__main__":
    print(json.dumps(describe(), indent=2))
