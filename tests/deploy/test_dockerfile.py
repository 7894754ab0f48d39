"""The Dockerfile and .dockerignore, checked without a Docker engine."""

from __future__ import annotations

import re
import subprocess

from tests.deploy.manifests import (
    DOCKERFILE,
    REPO,
    build_args,
    exec_form,
    final_stage,
    healthcheck,
    image_env,
    only,
    read_dockerfile,
    seconds,
    venv_tool,
)

INSTRUCTIONS = read_dockerfile()
RUNTIME = final_stage(INSTRUCTIONS)


def test_hadolint_passes_on_the_dockerfile() -> None:
    result = subprocess.run(
        [venv_tool("hadolint"), "--failure-threshold", "style", DOCKERFILE],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_stage_starts_from_the_pinned_cuda_base_image() -> None:
    image = build_args(INSTRUCTIONS)["CUDA_IMAGE"]
    assert re.fullmatch(r"nvidia/cuda:\d+\.\d+\.\d+-base-ubuntu\d+\.\d+", image), image
    froms = [i.args.split()[0] for i in INSTRUCTIONS if i.keyword == "FROM"]
    assert froms == ["${CUDA_IMAGE}", "${CUDA_IMAGE}"]


def test_runtime_stage_copies_only_the_venv_and_the_bundle_from_the_build_stage() -> None:
    copies = [i.args for i in RUNTIME if i.keyword == "COPY"]
    assert copies == [
        "--from=build /opt/venv /opt/venv",
        "--from=build /opt/resnet-serve /opt/resnet-serve",
    ]


def test_runtime_stage_installs_no_compiler_pip_cache_or_build_tools() -> None:
    runtime_runs = " ".join(i.args for i in RUNTIME if i.keyword == "RUN")
    for tool in ("gcc", "g++", "build-essential", "python3-dev", "python3-pip", "cuda-nvcc"):
        assert not re.search(rf"(?<![\w-]){re.escape(tool)}(?![\w-])", runtime_runs), tool
    assert "rm -rf /var/lib/apt/lists/*" in runtime_runs
    for run in (i.args for i in INSTRUCTIONS if i.keyword == "RUN" and "pip install" in i.args):
        assert "--no-cache-dir" in run, run


def test_image_installs_the_runtime_lock_with_hashes_and_wheels_only() -> None:
    lock = build_args(INSTRUCTIONS)["RUNTIME_LOCK"]
    assert lock == "requirements/runtime.lock"
    assert (REPO / lock).is_file()
    copy = next(i for i in INSTRUCTIONS if i.keyword == "COPY" and "RUNTIME_LOCK" in i.args)
    target = copy.args.split()[-1]
    installs = [i.args for i in INSTRUCTIONS if i.keyword == "RUN" and f"-r {target}" in i.args]
    assert len(installs) == 1
    assert "--require-hashes" in installs[0]
    assert "--only-binary=:all:" in installs[0]


def _pins(lock: str) -> dict[str, str]:
    """``name==version ; markers`` -> the whole entry (pin line plus its hashes)."""
    entries = re.split(r"\n(?=\S)", (REPO / lock).read_text())
    return {
        entry.split("\\")[0].strip(): entry.strip()
        for entry in entries
        if re.match(r"[A-Za-z0-9]", entry)
    }


def test_runtime_lock_pins_the_same_versions_and_hashes_as_the_dev_lock() -> None:
    # `make venv` installs dev.lock; the image installs runtime.lock. Both come from `make lock`, and
    # every runtime pin must be the dev venv's pin, hashes included, or tests prove another stack.
    runtime, dev = _pins("requirements/runtime.lock"), _pins("requirements/dev.lock")
    assert "torch==2.15.0" in runtime
    for pin, entry in runtime.items():
        hashes = sorted(re.findall(r"--hash=\S+", entry))
        assert pin in dev, f"{pin} is in runtime.lock but not in dev.lock"
        assert hashes == sorted(re.findall(r"--hash=\S+", dev[pin])), pin


def test_app_is_installed_non_editable_without_fetching_a_build_backend() -> None:
    install = next(i.args for i in INSTRUCTIONS if i.keyword == "RUN" and "/tmp/src" in i.args)
    assert "--no-deps" in install
    assert "--no-build-isolation" in install
    assert " -e " not in install


def test_runtime_runs_as_a_fixed_non_root_uid_from_a_read_only_friendly_environment() -> None:
    user, _, group = only(RUNTIME, "USER").args.partition(":")
    assert user.isdigit() and int(user) >= 1000
    assert group.isdigit() and int(group) != 0
    env = image_env(INSTRUCTIONS, base_path="/usr/bin:/bin")
    assert env["HOME"] == "/tmp"  # the only writable path on a read-only root filesystem
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["PATH"].split(":")[0] == "/opt/venv/bin"
    assert env["RESNET_SERVE_HOST"] == "0.0.0.0"
    assert env["RESNET_SERVE_MODEL_DIR"] == "/opt/resnet-serve/models/demo"


def test_demo_bundle_is_baked_in_where_the_environment_points_readable_by_any_uid() -> None:
    model_dir = image_env(INSTRUCTIONS, base_path="/usr/bin:/bin")["RESNET_SERVE_MODEL_DIR"]
    build = [i for i in INSTRUCTIONS if i.stage == 0]
    copy = next(i for i in build if i.keyword == "COPY" and i.args.startswith("models/demo "))
    assert copy.args.split() == ["models/demo", model_dir]
    chmod = next(i for i in build if i.keyword == "RUN" and i.args.startswith("chmod "))
    assert chmod.args == "chmod -R a+rX,go-w /opt/resnet-serve"
    assert model_dir.startswith("/opt/resnet-serve/")


def test_cmd_healthcheck_and_stop_signal_are_exec_form_and_sigterm() -> None:
    assert exec_form(only(RUNTIME, "CMD").args) == ["resnet-serve", "serve"]
    assert not [i for i in INSTRUCTIONS if i.keyword == "ENTRYPOINT"]
    assert only(RUNTIME, "STOPSIGNAL").args == "SIGTERM"
    options, argv = healthcheck(INSTRUCTIONS)
    assert argv == ["resnet-serve", "healthcheck"]
    # Model load plus warm-up on a cold GPU fit in the start period; a probe cannot hang forever.
    assert seconds(options["start-period"]) >= 60
    assert seconds(options["timeout"]) < seconds(options["interval"])


# ---- .dockerignore ------------------------------------------------------------------------------


def _glob(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex: Go's filepath.Match plus ``**`` for any depth."""
    regex, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            regex, i = regex + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            regex, i = regex + ".*", i + 2
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            regex, i = regex + pattern[i : end + 1], end + 1
        else:
            regex += {"*": "[^/]*", "?": "[^/]"}.get(pattern[i], re.escape(pattern[i]))
            i += 1
    return re.compile(regex)


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern that matches the path or one of its parents decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        regex = _glob(pattern.removeprefix("!").rstrip("/"))
        if any(regex.fullmatch(candidate) for candidate in candidates):
            ignored = not negated
    return ignored


def test_dockerignore_keeps_venv_git_tests_data_and_caches_out_of_the_context() -> None:
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for path in (
        ".venv/bin/python",
        ".git/HEAD",
        "tests/conftest.py",
        "runs/demo-data/train/circle/0.png",
        "models/other-bundle/model.safetensors",
        ".pytest_cache/v/cache/nodeids",
        ".ruff_cache/CACHEDIR.TAG",
        "app/__pycache__/main.cpython-311.pyc",
        "resnet_serve.egg-info/PKG-INFO",
    ):
        assert _ignored(path, patterns), f"{path} would be sent to the Docker daemon"
    for path in (
        "pyproject.toml",
        "README.md",
        "requirements/runtime.lock",
        "app/edge/application.py",
        "app/edge/routes/predict.py",
        "models/demo/model.json",
    ):
        assert not _ignored(path, patterns), f"{path} is copied by the Dockerfile but ignored"
