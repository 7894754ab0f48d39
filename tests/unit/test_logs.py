"""Log lines stay one record per line, and readable, whatever clients put in them."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator

import pytest

from app.edge.logs import JsonFormatter, TextFormatter, configure_logging, escape_control

FORGED_PATH = "/predict\r\n2026-01-01 00:00:00,000 INFO resnet_serve.access: forged"


def _record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
    return logging.makeLogRecord(
        {"name": "resnet_serve.access", "levelname": "INFO", "msg": msg, "args": args, **extra}
    )


def _failed_record(message: str) -> logging.LogRecord:
    try:
        raise ValueError(message)
    except ValueError:
        return logging.makeLogRecord(
            {"name": "app", "levelname": "ERROR", "msg": "failed", "exc_info": sys.exc_info()}
        )


@pytest.mark.parametrize(
    ("char", "shown"),
    [
        ("\r", r"\r"),
        ("\n", r"\n"),
        ("\t", r"\t"),
        ("\x00", r"\x00"),
        ("\x1b", r"\x1b"),
        ("\x7f", r"\x7f"),
        ("\x85", r"\x85"),
        ("\x9b", r"\x9b"),
        ("\u2028", r"\u2028"),
        ("\u2029", r"\u2029"),
        ("\u202e", r"\u202e"),
        ("\\", "\\\\"),
    ],
    ids=repr,
)
def test_control_characters_are_written_as_visible_escapes(char: str, shown: str) -> None:
    assert escape_control(f"a{char}b") == f"a{shown}b"


def test_printable_text_is_left_alone() -> None:
    text = "GET /images/café-😀.jpg 200 3.1ms"
    assert escape_control(text) == text


def test_encoded_crlf_in_a_path_cannot_forge_a_text_record() -> None:
    line = TextFormatter().format(_record("%s %s %d", "GET", FORGED_PATH, 404))
    assert "\n" not in line and "\r" not in line
    assert line.endswith(
        r"GET /predict\r\n2026-01-01 00:00:00,000 INFO resnet_serve.access: forged 404"
    )


def test_ansi_escape_in_a_path_cannot_repaint_the_terminal() -> None:
    line = TextFormatter().format(_record("GET %s", "/\x1b[31mred\x1b[0m"))
    assert "\x1b" not in line
    assert line.endswith(r"GET /\x1b[31mred\x1b[0m")


def test_extra_fields_are_escaped_in_the_text_format() -> None:
    line = TextFormatter().format(_record("done", request_id="id\u2028forged", batch_size=2))
    assert line.endswith(r"done id=id\u2028forged batch=2")


def test_traceback_keeps_its_lines_but_each_is_indented_and_escaped() -> None:
    lines = (
        TextFormatter().format(_failed_record("bad\n2026-01-01 INFO forged \x1b[2J")).split("\n")
    )
    assert lines[0].endswith("ERROR app: failed")
    assert lines[1] == "    Traceback (most recent call last):"
    assert all(line.startswith("    ") for line in lines[1:])
    assert lines[-2:] == ["    ValueError: bad", r"    2026-01-01 INFO forged \x1b[2J"]


@pytest.mark.parametrize("text", [FORGED_PATH, "/\x1b[31mred", "a\u2028b\u2029c\x85d", "\x00\x7f"])
def test_json_record_is_one_object_on_one_line(text: str) -> None:
    formatter = JsonFormatter()
    line = formatter.format(_record("GET %s", text, request_id=text))
    exc_line = formatter.format(_failed_record(text))
    for output in (line, exc_line):
        assert len(output.splitlines()) == 1  # splitlines also splits at U+2028, U+0085, ...
        assert output.isascii()
    assert json.loads(line)["message"] == f"GET {text}"
    assert json.loads(line)["request_id"] == text


def test_json_extra_fields_are_strings_or_numbers() -> None:
    class Odd:
        def __str__(self) -> str:
            return "odd\nvalue"

    line = JsonFormatter().format(
        _record("done", status=200, latency_ms=float("nan"), route=Odd(), batch_size=None)
    )
    entry = json.loads(line)
    assert (entry["status"], entry["latency_ms"], entry["route"]) == (200, "nan", "odd\nvalue")
    assert entry["batch_size"] is None


@pytest.fixture
def root_handlers() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("root_handlers")
def test_uvicorns_records_are_escaped_too(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("text", "info")
    logging.getLogger("uvicorn.error").warning("path %s", "/a\r\nb")
    assert capsys.readouterr().err.splitlines()[-1].endswith(r"uvicorn.error: path /a\r\nb")
