"""What the command groups of ``resnet-serve`` share: how a command is registered and how one that
calls the training library runs.

A group module (``serve``, ``prediction``, ``training``) has ``register(commands)``, which adds its
commands to ``commands``, the subparsers of ``app.cli.main``, each with a ``handler`` that returns
the exit status. Registering must stay cheap: the container runs ``resnet-serve healthcheck`` every
few seconds, so a command whose options come from the training library (which loads torch) passes
``configure=`` to get them only when it is the command being run.
"""

from __future__ import annotations

import argparse
import functools
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

Commands = argparse._SubParsersAction  # what add_subparsers returns; add_parser is called on it
Handler = Callable[[argparse.Namespace], int]
EXIT_ERROR = 2  # as argparse's own usage errors
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports it


class CommandParser(argparse.ArgumentParser):
    """A command's parser that runs its ``configure(parser)`` (options and handler) on first use.

    ``resnet-serve --help`` lists the commands from their ``help`` alone; a command's options are
    added only when its own arguments (``--help`` included) are parsed.
    """

    def __init__(
        self,
        *args: Any,
        configure: Callable[[argparse.ArgumentParser], None] | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(*args, **kw)
        self._configure = configure

    def parse_known_args(  # type: ignore[override]  # typeshed overloads it by namespace type
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        if self._configure is not None:
            configure, self._configure = self._configure, None
            configure(self)
        return super().parse_known_args(args, namespace)


def library_command(handler: Handler) -> Handler:
    """``handler`` with the library's progress and warnings on stderr (results go to stdout), and a
    failure the user can fix (a bad bundle, dataset or option) as one ``error: ...`` line, status 2.
    """

    @functools.wraps(handler)
    def run(args: argparse.Namespace) -> int:
        from app.model.bundle import BundleError  # torch, which the handler loads anyway

        # The app loggers' info lines on stderr for this command only: tests run several in turn.
        logger = logging.getLogger("app")
        previous = logger.level
        stderr = logging.StreamHandler(sys.stderr)
        stderr.setFormatter(_LogFormatter())
        logger.addHandler(stderr)
        logger.setLevel(logging.INFO)
        try:
            return handler(args)
        # DatasetError, CheckpointError, DeviceError and ImageDecodeError are ValueErrors.
        except (BundleError, ValueError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_ERROR
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        finally:
            logger.removeHandler(stderr)
            logger.setLevel(previous)

    return run


class _LogFormatter(logging.Formatter):
    """Info lines as they are; warnings and errors prefixed like ``warning: ...``, as a command-line
    tool writes them (the server's lines, ``app.edge.logs``, carry a time and a logger name)."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.levelno >= logging.WARNING:
            return f"{record.levelname.lower()}: {message}"
        return message
