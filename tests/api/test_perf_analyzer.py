"""Triton's perf_analyzer measures the service over HTTP and gRPC, server-side statistics included.

The binary comes from RESNET_SERVE_PERF_ANALYZER (a command, perhaps a wrapper script) or
``perf_analyzer`` on PATH. The ``perf-analyzer`` wheel that carries it needs glibc 2.38; elsewhere
pip installs a placeholder without it. Where no runnable binary is found the tests skip and say
why; they never pass without having run it.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from benchmarks.perf_analyzer_input import perf_analyzer_input
from tests.conftest import DEMO_BUNDLE, ServerProcess, encode, known_image

MODEL = json.loads((DEMO_BUNDLE / "model.json").read_text())
ENV = "RESNET_SERVE_PERF_ANALYZER"
REQUESTS = 20


@pytest.fixture(scope="module")
def perf_analyzer() -> list[str]:
    """The command that runs perf_analyzer, once it has shown it runs (its usage text)."""
    configured = os.environ.get(ENV)
    if configured:
        command, origin = shlex.split(configured), f"{ENV}={configured!r}"
    else:
        found = shutil.which("perf_analyzer")
        if found is None:
            pytest.skip(f"no perf_analyzer: {ENV} is unset and none is on PATH")
        command, origin = [found], f"perf_analyzer on PATH ({found})"
    try:
        # With no arguments it prints its usage (and exits non-zero).
        probe = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as error:
        pytest.skip(f"{origin} does not run: {error}")
    said = (probe.stdout + probe.stderr).strip()
    if "--concurrency-range" not in said or "--input-data" not in said:
        excerpt = "\n".join(said.splitlines()[:5]) or "(no output)"
        pytest.skip(
            f"{origin} does not run perf_analyzer (exit {probe.returncode}, no usage text): {excerpt}"
        )
    return command


@pytest.fixture(scope="module")
def input_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A star, as ``python -m benchmarks.perf_analyzer_input star.jpg`` writes it."""
    path = tmp_path_factory.mktemp("perf-analyzer") / "input.json"
    path.write_text(json.dumps(perf_analyzer_input([encode(known_image("star", 0))])))
    return path


def _section(output: str, name: str) -> str:
    """The indented lines under ``  Client:`` or ``  Server:``."""
    match = re.search(rf"^ *{name}: *\n((?: {{4,}}.*\n?)+)", output, re.MULTILINE)
    assert match, f"no {name} section in perf_analyzer's output:\n{output}"
    return match.group(1)


def _number(section: str, label: str) -> float:
    match = re.search(rf"^\s*{label}: ([\d.]+)", section, re.MULTILINE)
    assert match, f"no {label!r} in:\n{section}"
    return float(match.group(1))


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_perf_analyzer_measures_images_with_server_side_statistics(
    perf_analyzer: list[str], input_data: Path, demo_server: ServerProcess, protocol: str
) -> None:
    url = demo_server.url.removeprefix("http://") if protocol == "http" else demo_server.grpc_url
    command = [*perf_analyzer, "-m", MODEL["name"], "-u", url, "-i", protocol]
    command += ["--input-data", str(input_data), "--concurrency-range", "1"]
    command += ["--measurement-interval", "1000", "--request-count", str(REQUESTS)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=240)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{shlex.join(command)}\n{output}\nserver:\n{demo_server.logs()}"
    client, server = _section(output, "Client"), _section(output, "Server")
    assert _number(client, "Request count") == REQUESTS
    assert _number(client, "Throughput") > 0
    # The statistics extension reports (at least) the measured requests, all successful.
    assert _number(server, "Successful request count") >= REQUESTS
    assert _number(server, "Inference count") >= REQUESTS
    summary = re.search(r"Concurrency: 1, throughput: ([\d.]+) infer/sec", output)
    assert summary and float(summary.group(1)) > 0, output
