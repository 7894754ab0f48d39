"""Readers for the deployment files, so that tests compare what the files say, not copies of it.

Small on purpose: the Dockerfile reader knows instructions, line continuations, exec form and
``KEY=value`` pairs; the Compose reader knows ``${VAR:-default}``; the Kubernetes reader follows
the kustomization's resource list. Anything fancier belongs to the real tools, which other tests run.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
COMPOSE_FILE = REPO / "docker-compose.yml"
K8S_DIR = REPO / "deploy" / "k8s"


def venv_tool(name: str) -> Path:
    """A console script installed next to the interpreter that runs the tests (.venv/bin)."""
    return Path(sys.executable).parent / name


# ---- Dockerfile ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, ENV, ...
    args: str  # everything after the keyword, continuations joined
    stage: int  # index of the FROM this instruction belongs to; -1 before the first FROM


def read_dockerfile(path: Path = DOCKERFILE) -> list[Instruction]:
    """Instructions in file order. Comment lines inside a continued instruction are dropped, as
    Docker does."""
    instructions: list[Instruction] = []
    stage = -1
    pending = ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        pending = f"{pending} {stripped}" if pending else stripped
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip()
            continue
        keyword, _, args = pending.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        instructions.append(Instruction(keyword, args.strip(), stage))
        pending = ""
    return instructions


def final_stage(instructions: list[Instruction]) -> list[Instruction]:
    last = max(i.stage for i in instructions)
    return [i for i in instructions if i.stage == last]


def only(instructions: list[Instruction], keyword: str) -> Instruction:
    """The single instruction with ``keyword``; fails when there are none or several."""
    found = [i for i in instructions if i.keyword == keyword]
    if len(found) != 1:
        raise LookupError(f"expected exactly one {keyword}, found {len(found)}")
    return found[0]


def exec_form(args: str) -> list[str]:
    """The argv of an exec-form (JSON array) CMD/ENTRYPOINT/HEALTHCHECK CMD; fails on shell form."""
    argv = json.loads(args)
    if not (isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv)):
        raise ValueError(f"not an exec-form array: {args}")
    return argv


def key_values(args: str, environment: dict[str, str] | None = None) -> dict[str, str]:
    """``KEY=value`` pairs of an ENV or ARG line, with ``$VAR``/``${VAR}`` expanded from
    ``environment`` (the image's own earlier ENV, for instance PATH)."""
    environment = environment or {}

    def expand(value: str) -> str:
        pattern = r"\$\{(\w+)\}|\$(\w+)"
        return re.sub(pattern, lambda m: environment.get(m[1] or m[2], ""), value)

    pairs = {}
    for word in shlex.split(args):
        key, sep, value = word.partition("=")
        if not sep:
            raise ValueError(f"use KEY=value in ENV/ARG, not the legacy form: {args}")
        pairs[key] = expand(value)
    return pairs


def image_env(instructions: list[Instruction], base_path: str) -> dict[str, str]:
    """The final stage's ENV, as a container of the image would see it (``base_path`` stands in
    for the PATH that the base image sets)."""
    environment = {"PATH": base_path}
    for instruction in final_stage(instructions):
        if instruction.keyword == "ENV":
            environment.update(key_values(instruction.args, environment))
    return environment


def build_args(instructions: list[Instruction]) -> dict[str, str]:
    """Default values of every ``ARG name=default``, global or per stage."""
    defaults: dict[str, str] = {}
    for instruction in instructions:
        if instruction.keyword == "ARG" and "=" in instruction.args:
            defaults.update(key_values(instruction.args))
    return defaults


def healthcheck(instructions: list[Instruction]) -> tuple[dict[str, str], list[str]]:
    """The final stage's HEALTHCHECK as (``--option`` values, exec-form argv)."""
    args = only(final_stage(instructions), "HEALTHCHECK").args
    options: dict[str, str] = {}
    while args.startswith("--"):
        option, _, args = args.partition(" ")
        name, _, value = option[2:].partition("=")
        options[name] = value
        args = args.lstrip()
    keyword, _, command = args.partition(" ")
    if keyword.upper() != "CMD":
        raise ValueError(f"HEALTHCHECK without CMD: {args}")
    return options, exec_form(command)


# ---- durations, Compose -------------------------------------------------------------------------

_DURATION_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def seconds(duration: str) -> float:
    """Docker/Compose durations such as ``30s``, ``1m30s`` or ``500ms``, in seconds."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    if not parts or "".join(n + u for n, u in parts) != duration:
        raise ValueError(f"not a duration: {duration!r}")
    return sum(float(number) * _DURATION_UNITS[unit] for number, unit in parts)


def interpolate(value: Any) -> Any:
    """A Compose value with every ``${VAR:-default}`` replaced by its default, as on a host that
    sets none of the variables. A bare ``${VAR}`` without a default is an error here."""
    if not isinstance(value, str):
        return value

    def default(match: re.Match[str]) -> str:
        if match[2] is None:
            raise ValueError(f"{match[0]} has no default")
        return match[2]

    return re.sub(r"\$\{(\w+)(?::-([^}]*))?\}", default, value)


def read_compose(path: Path = COMPOSE_FILE) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def compose_environment(service: dict[str, Any]) -> dict[str, str]:
    environment = service.get("environment", {})
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    return {key: str(interpolate(value)) for key, value in environment.items()}


# ---- Kubernetes ---------------------------------------------------------------------------------


def k8s_files() -> list[Path]:
    """The manifests that the kustomization applies, in its order."""
    kustomization = yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())
    return [K8S_DIR / name for name in kustomization["resources"]]


def k8s_objects() -> dict[str, dict[str, Any]]:
    """Every object of the kustomization by kind (one of each kind here)."""
    objects: dict[str, dict[str, Any]] = {}
    for path in k8s_files():
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                if document["kind"] in objects:
                    raise ValueError(f"two {document['kind']} objects; index them by name instead")
                objects[document["kind"]] = document
    return objects


def container_env(container: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: str(item["value"]) for item in container.get("env", [])}
