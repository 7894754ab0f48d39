"""Process-wide logging set-up for the server: plain text or one JSON object per line.

Log lines carry what clients send (paths, ids, filenames), so both formats keep one record per line
whatever a client sends: a percent-encoded CR/LF in a path must not forge a second record, and an
ANSI escape must not repaint the operator's terminal. The formatters do it, so every logger is
covered (uvicorn's included) and no call site has to remember.
"""

from __future__ import annotations

import json
import logging
import math
from datetime import UTC, datetime

# Attributes that the access log attaches with ``extra=`` and that belong in every format.
EXTRA_FIELDS = ("request_id", "route", "status", "latency_ms", "batch_size", "images")

# Indents the lines of a traceback, so that none of them (an exception's message is often
# client-controlled) can pass for a record of its own.
CONTINUATION = "\n    "


def escape_control(text: str, keep_newlines: bool = False) -> str:
    """``text`` with every non-printable character and the backslash written as a Python escape.

    Non-printable is ``str.isprintable``'s sense: C0 and C1 controls, DEL, U+2028/U+2029, format
    characters (bidi overrides), non-ASCII spaces. The backslash is escaped too, so a client cannot
    write a literal ``\\x1b`` that reads like an escaped one.
    """
    if text.isprintable() and "\\" not in text:
        return text  # the common case, checked in C
    return "".join(
        char
        if (char.isprintable() and char != "\\") or (keep_newlines and char == "\n")
        else char.encode("unicode_escape").decode("ascii")
        for char in text
    )


class TextFormatter(logging.Formatter):
    """Human-readable lines; access lines end with the request id and batch size.

    The record's line is escaped whole; tracebacks keep their newlines, escaped otherwise and
    indented.
    """

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        # Not super().format(): that appends the traceback unescaped and caches it on the record.
        record.message = record.getMessage()
        record.asctime = self.formatTime(record, self.datefmt)
        line = self.formatMessage(record)
        if hasattr(record, "request_id"):
            line += f" id={record.request_id}"
            batch_size = getattr(record, "batch_size", None)
            if batch_size is not None:
                line += f" batch={batch_size}"
        line = escape_control(line)
        blocks = [self.formatException(record.exc_info) if record.exc_info else record.exc_text]
        if record.stack_info:
            blocks.append(self.formatStack(record.stack_info))
        for block in filter(None, blocks):
            line += _indented(escape_control(block, keep_newlines=True))
        return line


def _indented(block: str) -> str:
    return CONTINUATION + block.replace("\n", CONTINUATION)


def _json_value(value: object) -> str | int | float | None:
    """None and finite numbers pass; all else (NaN too: JSON has none) is written as a string."""
    if (
        value is None
        or isinstance(value, int)
        or (isinstance(value, float) and math.isfinite(value))
    ):
        return value
    return str(value)


class JsonFormatter(logging.Formatter):
    """One JSON object per record, for log shippers; extra request fields become keys.

    ``json.dumps`` escapes control characters and, with its default ``ensure_ascii``, every
    non-ASCII one (U+2028 included), so each record stays on one line.
    """

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, str | int | float | None] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(
            {key: _json_value(getattr(record, key)) for key in EXTRA_FIELDS if hasattr(record, key)}
        )
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, allow_nan=False)


def configure_logging(log_format: str, level: str) -> None:
    """Route our loggers, uvicorn's and Python's warnings through one handler on stderr (a warning
    printed raw would be neither escaped nor a JSON line)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.captureWarnings(True)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True


access_logger = logging.getLogger("resnet_serve.access")


def log_access(
    method: str,
    path: str,
    route: str,
    status: int | str,
    elapsed_s: float,
    request_id: str,
    **fields: object,
) -> None:
    """One access-log line per request, HTTP or gRPC alike: ``method path status latency``, with
    the same structured fields (``fields`` adds the batch size and images where known). The path
    is the client's, escaped by the formatters; no header value is ever part of the line."""
    logger_fields = {
        "request_id": request_id,
        "route": route,
        "status": status,
        "latency_ms": round(elapsed_s * 1000, 2),
        **fields,
    }
    access_logger.info(
        "%s %s %s %.1fms", method, path, status, elapsed_s * 1000, extra=logger_fields
    )
