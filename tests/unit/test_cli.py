"""The command line: serve's options mirror the settings, and bad values exit 2 with one line each."""

from __future__ import annotations

import pytest

from app.cli.main import build_parser, main
from app.settings import Settings


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
