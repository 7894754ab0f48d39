"""``resnet-serve``: the command line, one parser built from the command-group modules.

Each group module registers its own commands, so every name is written once: ``serve`` (serve,
healthcheck), ``prediction`` (predict), ``training`` (finetune, evaluate, calibrate, demo-data). Heavy modules are
imported only by the command that needs them, so the container's every-few-seconds ``resnet-serve
healthcheck`` never loads torch (see ``app.cli.commands``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from app.cli import prediction, serve, training
from app.cli.commands import EXIT_ERROR, CommandParser

GROUPS = (serve, prediction, training)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="resnet-serve",
        description="Serve, fine-tune and evaluate ResNet image classifiers.",
        epilog="Run 'resnet-serve COMMAND --help' for a command's options.",
    )
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=CommandParser
    )
    for group in GROUPS:
        group.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command and return its exit status (argparse itself exits 2 on usage errors)."""
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except ValidationError as exc:  # a setting, from an option or a RESNET_SERVE_* variable
        for problem in exc.errors():
            name = ".".join(str(part) for part in problem["loc"]) or "settings"
            print(f"error: invalid setting {name}: {problem['msg']}", file=sys.stderr)
        return EXIT_ERROR
