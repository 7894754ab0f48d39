"""The HTTP systems a run compares, and how each one is started.

Every system, the in-process ceiling included, gets the same ``RESNET_SERVE_*`` environment (bundle,
device, torch threads, max batch size and any ``--service-env``): the service reads it as its
settings, and the others build the same runner from it (``benchmarks.classifier``). Only a variant
adds settings of its own. ``OMP_NUM_THREADS`` is set for all of them too.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.bodies import BODY_KINDS, PREDICT_KINDS, BodyKind

CLI = Path(sys.executable).with_name("resnet-serve")
ENV_PREFIX = "RESNET_SERVE_"
PORT = "{port}"  # replaced by the port the harness picks when it starts the system
BUILT_IN = ("plain", "litserve", "service", "null")


@dataclass(frozen=True)
class RunSettings:
    """What every system of one run shares."""

    model_dir: Path
    device: str  # resolved: "cpu" or "cuda"
    threads: int
    service_env: dict[str, str] = field(default_factory=dict)  # --service-env, for every system

    @property
    def model_name(self) -> str:
        """The bundle's name: the model of the Open Inference Protocol's paths."""
        return str(json.loads((self.model_dir / "model.json").read_text())["name"])


@dataclass(frozen=True)
class System:
    """One server to start: its command and environment, and what it can report."""

    name: str
    argv: tuple[str, ...]
    env: dict[str, str]
    ready_path: str
    reports_batches: bool  # resnet-serve's /metrics has the batch-size histogram
    bodies: tuple[BodyKind, ...] = BODY_KINDS
    description: str = ""

    def command(self, port: int) -> list[str]:
        return [arg.replace(PORT, str(port)) for arg in self.argv]

    def environment(self, port: int) -> dict[str, str]:
        return child_environment({k: v.replace(PORT, str(port)) for k, v in self.env.items()})


def child_environment(extra: dict[str, str]) -> dict[str, str]:
    """The harness's environment less its own ``RESNET_SERVE_*`` values (only the run's settings
    reach a server), plus ``extra``."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    return inherited | extra


def setting_env(pairs: dict[str, str]) -> dict[str, str]:
    """``{"JPEG_DRAFT": "false"}`` -> ``{"RESNET_SERVE_JPEG_DRAFT": "false"}`` (prefix optional)."""
    return {
        (k.upper() if k.upper().startswith(ENV_PREFIX) else ENV_PREFIX + k.upper()): v
        for k, v in pairs.items()
    }


def model_env(run: RunSettings) -> dict[str, str]:
    """The settings every system of the run shares, the in-process ceiling included."""
    defaults = {
        "OMP_NUM_THREADS": str(run.threads),
        "RESNET_SERVE_MODEL_DIR": str(run.model_dir),
        "RESNET_SERVE_DEVICE": run.device,
        "RESNET_SERVE_TORCH_THREADS": str(run.threads),
        "RESNET_SERVE_MAX_BATCH_SIZE": "32",
    }
    return defaults | setting_env(run.service_env)


def _one_replica(env: dict[str, str]) -> bool:
    """Each replica has its own /metrics, and a scrape reaches whichever one accepts it."""
    return env.get(ENV_PREFIX + "WORKERS", "1") == "1"


def _service_env(run: RunSettings, overrides: dict[str, str]) -> dict[str, str]:
    listen = {
        "RESNET_SERVE_HOST": "127.0.0.1",
        "RESNET_SERVE_PORT": PORT,
        "RESNET_SERVE_GRPC_PORT": "0",  # HTTP bodies only; 8001 may be another server's
        "RESNET_SERVE_LOG_LEVEL": "warning",
    }
    return listen | model_env(run) | setting_env(overrides)


def service(
    run: RunSettings, name: str = "service", overrides: dict[str, str] | None = None
) -> System:
    """``resnet-serve serve``, with the run's settings and, for a variant, its own on top."""
    changed = ", ".join(f"{k}={v}" for k, v in (overrides or {}).items())
    env = _service_env(run, overrides or {})
    return System(
        name=name,
        argv=(str(CLI), "serve"),
        env=env,
        ready_path="/health/ready",
        reports_batches=_one_replica(env),
        description=f"resnet-serve with {changed}" if changed else "resnet-serve serve",
    )


def null_service(run: RunSettings, overrides: dict[str, str] | None = None) -> System:
    """The service with a model that answers at once (``benchmarks.servers.null_service``)."""
    env = _service_env(run, overrides or {})
    return System(
        name="null",
        argv=(sys.executable, "-m", "benchmarks.servers.null_service"),
        env=env,
        ready_path="/health/ready",
        reports_batches=_one_replica(env),
        description="resnet-serve, model replaced by one returning zeros (ingress ceiling)",
    )


def _peer(
    run: RunSettings,
    name: str,
    module: str,
    description: str,
    bodies: tuple[BodyKind, ...] = PREDICT_KINDS,
) -> System:
    """A peer server from ``benchmarks.peers``: the shared options, readiness on /health."""
    return System(
        name=name,
        argv=(
            sys.executable,
            "-m",
            module,
            f"--port={PORT}",
            f"--model-dir={run.model_dir}",
            f"--device={run.device}",
            f"--threads={run.threads}",
        ),
        env=model_env(run),
        ready_path="/health",
        reports_batches=False,
        bodies=bodies,
        description=description,
    )


def plain(run: RunSettings) -> System:
    return _peer(
        run,
        "plain",
        "benchmarks.peers.plain_fastapi",
        "FastAPI, inference inline in an async handler, one request at a time",
    )


def litserve(run: RunSettings) -> System:
    return _peer(
        run,
        "litserve",
        "benchmarks.peers.litserve_peer",
        "LitServe, max batch 16, batch timeout 10 ms, one worker",
        bodies=("multipart",),  # LitServe reads a body as a form or as JSON, not raw bytes
    )


def built_in(name: str, run: RunSettings) -> System:
    """The system called ``name`` (one of ``BUILT_IN``)."""
    builders = {"plain": plain, "litserve": litserve, "service": service, "null": null_service}
    return builders[name](run)
