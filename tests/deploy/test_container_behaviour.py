"""The image's start-up, HEALTHCHECK and drain, reproduced without a container engine.

What the container does is done here from what the Dockerfile says: the build stage's sources
installed non-editable into a virtual environment of their own, its model copy and chmod, all of it
read-only; the final stage's ENV with its paths moved under a scratch root and a free port;
the final stage's USER (a uid with no passwd entry on this host, as OpenShift assigns); the CMD
and the HEALTHCHECK argv run verbatim through PATH. The third-party packages come from the test
venv (the same runtime.lock pins, test_dockerfile checks) instead of a second multi-GB install,
hard-linked into the scratch root: the image has them in a venv that everyone can read, while the
checkout may sit where that uid cannot go (a 0700 ``mktemp -d``, root's home).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import encode, free_port, known_image
from tests.deploy.manifests import (
    REPO,
    Instruction,
    exec_form,
    final_stage,
    healthcheck,
    image_env,
    k8s_objects,
    only,
    read_dockerfile,
)
from tests.waiting import wait_for

INSTRUCTIONS = read_dockerfile()
RUNTIME = final_stage(INSTRUCTIONS)
BUILD_STAGE = next(i.stage for i in INSTRUCTIONS if re.search(r" AS build$", i.args, re.I))
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
(HPA_METRIC,) = (
    metric["pods"]["metric"]["name"]
    for metric in k8s_objects()["HorizontalPodAutoscaler"]["spec"]["metrics"]
)


@dataclass
class Image:
    """A scratch root standing in for the image's filesystem, and how to run things in it."""

    root: Path
    env: dict[str, str]
    workdir: Path
    user: tuple[int, int]

    def argv(self, command: list[str]) -> list[str]:
        return _as_user(self.user, command)

    def run(self, command: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(command),
            env=self.env,
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=30,
        )


def _as_user(user: tuple[int, int], command: list[str]) -> list[str]:
    """``command`` run as ``user`` (uid, gid); when the tests do not run as root they already are
    someone else, and that is as good."""
    if os.geteuid() != 0:
        return command
    uid, gid = user
    return ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--", *command]


def _in_image(root: Path, path: str) -> Path:
    return root / path.lstrip("/")


def _rebase(root: Path, value: str) -> str:
    """Image paths in an ENV value (``/opt/...``, ``/tmp``, PATH lists) moved under ``root``."""
    parts = value.split(":")
    return ":".join(
        str(_in_image(root, part)) if re.match(r"/(opt|tmp)(/|$)", part) else part for part in parts
    )


def _copy(source: Path, target: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")  # as .dockerignore does
    if source.is_dir():
        shutil.copytree(source, target, ignore=ignore)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


def _replay(stage: list[Instruction], root: Path) -> None:
    """Carry out the stage's plain ``COPY src... dest`` and ``RUN chmod`` instructions under root.
    ``COPY --from=build`` copies within the one scratch root and is already done; the lock file is
    skipped because the packages come from the test venv; apt, venv and pip steps are the
    fixture's own."""
    for instruction in stage:
        words = shlex.split(instruction.args)
        if instruction.keyword == "COPY" and not words[0].startswith("--"):
            *sources, dest = words
            for source in (s for s in sources if "$" not in s):
                target = _in_image(root, dest)
                _copy(REPO / source, target / Path(source).name if dest.endswith("/") else target)
        elif instruction.keyword == "RUN" and words[0] == "chmod":
            rebased = [_rebase(root, word) if word.startswith("/") else word for word in words]
            subprocess.run(rebased, check=True)


def _read_only(path: Path) -> None:
    for current, directories, files in os.walk(path):
        for name in [*directories, *files]:
            entry = Path(current, name)
            if not entry.is_symlink():
                entry.chmod(entry.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    path.chmod(0o555)


def _interpreter(user: tuple[int, int]) -> str:
    """A Python of the test venv's version that works for the image user: the test venv's own base
    interpreter may live under a home directory that user cannot read, where it starts but cannot
    find its standard library."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [sys._base_executable, shutil.which(version, path=BASE_PATH)]
    ask = ["-c", "import sys; print(sys.prefix, sys.version)"]
    for candidate in filter(None, candidates):
        mine = subprocess.run([candidate, *ask], capture_output=True, text=True)
        theirs = subprocess.run(_as_user(user, [candidate, *ask]), capture_output=True, text=True)
        if theirs.returncode == 0 and theirs.stdout == mine.stdout:
            return candidate
    pytest.fail(f"no {version} that uid {user[0]} can run; tried {candidates}")


def _link_or_copy(source: str, target: str) -> None:
    """Hard-link ``source`` at ``target`` (no bytes copied); copy a file that only its owner may
    read and make the copy readable, since a chmod on a link would change the test venv's file."""
    if os.stat(source).st_mode & stat.S_IROTH:
        os.link(source, target)
    else:
        shutil.copy2(source, target)
        os.chmod(target, os.stat(target).st_mode | 0o444)


def _locked_packages(root: Path, user: tuple[int, int], python: str) -> Path:
    """The test venv's packages where ``user`` can read them. Run as root, they are re-created
    under ``root`` with new directories and hard-linked files (about a second for 50,000 files),
    so the modes of the directories above the test venv no longer matter. Hard links cannot
    cross filesystems; then the test venv is used in place if ``user`` can read it."""
    site = Path(sysconfig.get_paths()["purelib"])
    if os.geteuid() == 0 and site.stat().st_dev == root.stat().st_dev:
        target = root / "locked-packages"  # outside /opt: _read_only must not chmod the links
        shutil.copytree(site, target, copy_function=_link_or_copy)
        for current, _, _ in os.walk(target):  # copytree gave them the test venv's modes
            Path(current).chmod(0o755)
        return target
    listing = ["-c", "import os, sys; os.listdir(sys.argv[1])", str(site)]
    if subprocess.run(_as_user(user, [python, *listing]), capture_output=True).returncode != 0:
        pytest.skip(
            f"uid {user[0]} cannot read the test venv's packages in {site}, and they cannot be "
            f"hard-linked into {root.parent} (another filesystem); set TMPDIR to a directory "
            "on the venv's filesystem that every user can enter"
        )
    return site


@pytest.fixture(scope="module")
def image() -> Iterator[Image]:
    uid, _, gid = only(RUNTIME, "USER").args.partition(":")
    user = (int(uid), int(gid or uid))
    root = Path(tempfile.mkdtemp(prefix="resnet-serve-image-"))
    root.chmod(0o755)  # mkdtemp makes it private to root
    try:
        # Build stage: the venv (system-like Python + the locked packages), then the app into it.
        python = _interpreter(user)
        venv = _in_image(root, "/opt/venv")
        subprocess.run([python, "-m", "venv", "--without-pip", venv], check=True)
        (site,) = venv.glob("lib/python*/site-packages")
        locked = _locked_packages(root, user, python)
        (site / "_locked_packages.pth").write_text(f"{locked}\n")
        _replay([i for i in INSTRUCTIONS if i.stage == BUILD_STAGE], root)
        install = [venv / "bin" / "python", "-m", "pip", "install", "--quiet", "--no-index"]
        install += ["--no-deps", "--no-build-isolation", "--ignore-installed"]
        install += ["--disable-pip-version-check", _in_image(root, "/tmp/src")]
        subprocess.run(install, check=True, cwd=root)
        shutil.rmtree(_in_image(root, "/tmp/src"))
        # Runtime stage: everything read-only, /tmp writable for the user only.
        _replay(RUNTIME, root)
        _read_only(_in_image(root, "/opt"))
        scratch = _in_image(root, "/tmp")
        if os.geteuid() == 0:
            os.chown(scratch, *user)
        scratch.chmod(0o700)
        env = {
            key: _rebase(root, value) for key, value in image_env(INSTRUCTIONS, BASE_PATH).items()
        }
        env["TMPDIR"] = str(scratch)  # the container's /tmp; the host's is not ours to fill
        env["RESNET_SERVE_PORT"] = str(free_port())
        env["RESNET_SERVE_GRPC_PORT"] = str(free_port())  # the image's 8001 may be taken here
        workdir = _in_image(root, only(RUNTIME, "WORKDIR").args)
        yield Image(root, env, workdir, user)
    finally:
        for current, _, _ in os.walk(root):  # without root's privileges, make it deletable first
            Path(current).chmod(0o755)
        shutil.rmtree(root)


def test_image_serves_its_own_installed_copy_of_the_app(image: Image) -> None:
    result = image.run(["python", "-c", "import app; print(app.__file__)"])
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).is_relative_to(_in_image(image.root, "/opt/venv"))
    write = image.run(["python", "-c", f"open({str(image.workdir / 'x')!r}, 'w')"])
    assert "Permission denied" in write.stderr  # code and model are read-only for the image user


def _status(url: str) -> int | None:
    """The HTTP status of GET ``url``, or None while nothing listens."""
    try:
        return httpx.get(url, timeout=5).status_code
    except httpx.TransportError:
        return None


def _metric(url: str, name: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=5).text
    return float(re.search(rf"^{name} (\S+)$", text, re.M)[1])


def _wait_for(
    condition: Callable[[], bool], what: str, server: subprocess.Popen, log: Path
) -> None:
    """``wait_for`` ``condition`` while the server lives; fail with its log if it dies or time runs
    out."""

    def holds() -> bool:
        assert server.poll() is None, f"server exited with {server.returncode}:\n{log.read_text()}"
        return condition()

    wait_for(holds, 60, what, detail=log.read_text)


def test_healthcheck_fails_while_starting_passes_when_ready_and_fails_while_draining(
    image: Image, tmp_path: Path
) -> None:
    command = exec_form(only(RUNTIME, "CMD").args)
    _, check = healthcheck(INSTRUCTIONS)
    port = int(image.env["RESNET_SERVE_PORT"])
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            image.argv(command), env=image.env, cwd=image.workdir, stdout=out, stderr=out
        )
    try:
        # Starting: torch is still importing (port closed) or the model is warming up (503).
        starting = image.run(check)
        assert starting.returncode != 0, starting
        assert server.poll() is None, log.read_text()

        _wait_for(lambda: _status(f"{url}/health/ready") == 200, "ready", server, log)
        ready = image.run(check)
        assert (ready.returncode, ready.stderr) == (0, ""), ready
        assert _status(f"{url}/health/live") == 200
        assert _metric(url, "resnet_serve_queue_depth") == 0

        # Draining: hold one /predict open by sending only half of its body, then SIGTERM.
        idle = _metric(url, HPA_METRIC)  # the scrape may count itself
        body = encode(known_image("circle", 0), "PNG")
        head = (
            "POST /predict?top_k=1 HTTP/1.1\r\nHost: test\r\nContent-Type: image/png\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        with socket.create_connection(("127.0.0.1", port), timeout=30) as upload:
            upload.sendall(head.encode() + body[: len(body) // 2])
            _wait_for(lambda: _metric(url, HPA_METRIC) > idle, "the upload admitted", server, log)
            server.send_signal(signal.SIGTERM)
            _wait_for(lambda: _status(f"{url}/health/ready") == 503, "draining", server, log)
            draining = image.run(check)
            assert draining.returncode != 0, draining
            assert draining.stderr.strip().endswith("HTTP 503"), draining
            assert server.poll() is None  # still draining: the half-sent request holds it open

            upload.sendall(body[len(body) // 2 :])
            response = upload.makefile("rb").read()
        assert response.startswith(b"HTTP/1.1 200"), response[:300]
        assert server.wait(30) == 0, log.read_text()
        assert image.run(check).returncode != 0  # after exit nothing listens
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
