"""The command line: one parser for every command, serve's options mirror the settings, bad values
exit 2 with one line each, and the light commands load no torch."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from app.cli.main import build_parser, main
from app.settings import Settings
from tests.conftest import REPO, free_port

COMMANDS = ("serve", "healthcheck", "predict", "finetune", "evaluate", "calibrate", "demo-data")
HEAVY_MODULES = ("torch", "torchvision", "numpy", "PIL", "fastapi", "uvicorn")


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (commands,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(commands.choices)


def test_every_command_is_listed_and_has_its_own_help(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    assert tuple(_subcommands(parser)) == COMMANDS
    top = parser.format_help()
    for name in COMMANDS:
        assert name in top
        with pytest.raises(SystemExit) as done:
            parser.parse_args([name, "--help"])
        assert done.value.code == 0
        assert capsys.readouterr().out.startswith(f"usage: resnet-serve {name} ")


@pytest.mark.parametrize(
    ("command", "status"),
    [
        (["healthcheck", "--url", "http://127.0.0.1:{port}/health/ready", "--timeout", "1"], 1),
        (["predict", "{image}", "--url", "http://127.0.0.1:{port}"], 2),
    ],
)
def test_healthcheck_and_predict_load_no_torch(
    tmp_path: Path, command: list[str], status: int
) -> None:
    """The container probes every few seconds, and the client is meant for machines without torch."""
    image = tmp_path / "cat.jpg"
    image.write_bytes(b"not fetched: no server listens")
    argv = [part.format(port=free_port(), image=image) for part in command]
    script = (
        "import json, sys\n"
        "from app.cli.main import main\n"
        "status = main(json.loads(sys.argv[1]))\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in sys.argv[2:])\n"
        "print(json.dumps([status, loaded]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, json.dumps(argv), *HEAVY_MODULES],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert json.loads(done.stdout) == [status, []], done.stderr


def test_serve_has_one_option_per_setting(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--help"])
    help_text = capsys.readouterr().out
    for name in Settings.model_fields:
        assert "--" + name.replace("_", "-") in help_text
        assert f"RESNET_SERVE_{name.upper()}" in help_text


def test_invalid_serve_options_exit_2_naming_each_setting(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["serve", "--max-batch-size", "0", "--device", "gpu"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2
    assert {line.split(":")[1] for line in lines} == {
        " invalid setting max_batch_size",
        " invalid setting device",
    }


def test_finetune_weights_dtype_is_fp16_or_fp32(capsys: pytest.CaptureFixture[str]) -> None:
    finetune = ["finetune", "data", "--out", "models/x"]
    assert build_parser().parse_args(finetune).weights_dtype == "fp32"
    assert build_parser().parse_args([*finetune, "--weights-dtype", "fp16"]).weights_dtype == "fp16"
    with pytest.raises(SystemExit) as refused:
        build_parser().parse_args([*finetune, "--weights-dtype", "float16"])
    assert refused.value.code == 2
    assert "--weights-dtype: invalid choice: 'float16'" in capsys.readouterr().err


def test_healthcheck_without_a_server_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["healthcheck", "--url", "http://127.0.0.1:9/health/ready", "--timeout", "1"]) == 1
    assert capsys.readouterr().err.startswith("unhealthy:")
