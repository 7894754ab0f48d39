"""``resnet-serve``: the command line.

``serve``, ``healthcheck`` and ``predict`` (the client) live here; ``finetune``, ``evaluate`` and
``demo-data`` are handed to ``app.cli.training``. Heavy modules are imported only by the command
that needs them, so the container's every-few-seconds ``resnet-serve healthcheck`` never loads torch.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from app.settings import Settings

EXIT_ERROR = 2
# Kept in step with app.cli.training.COMMAND_NAMES by a test; importing it here would load torch.
TRAINING_COMMANDS = {
    "finetune": "fine-tune a ResNet on an image folder and write a bundle",
    "evaluate": "score a bundle on a labelled image folder",
    "calibrate": "fit a bundle's softmax temperature and abstain threshold",
    "demo-data": "generate the labelled shapes dataset used for the demo model",
}


def _add_setting_options(parser: argparse.ArgumentParser) -> None:
    """One ``--option`` per setting, so options and ``RESNET_SERVE_*`` variables cannot drift."""
    for name, field in Settings.model_fields.items():
        parser.add_argument(
            "--" + name.replace("_", "-"),
            dest=name,
            metavar=name.upper(),
            help=f"{field.description} (env RESNET_SERVE_{name.upper()}, default {field.default})",
        )


def _serve(args: argparse.Namespace) -> int:
    overrides = {
        name: getattr(args, name)
        for name in Settings.model_fields
        if getattr(args, name) is not None
    }
    settings = Settings(**overrides)
    if settings.workers > 1:
        from app.edge.logs import configure_logging
        from app.edge.replicas import serve_replicas

        configure_logging(settings.log_format, settings.log_level)
        return serve_replicas(settings)
    from app.edge.server import serve  # torch and uvicorn load only when serving

    return serve(settings)


def _healthcheck(args: argparse.Namespace) -> int:
    from app.cli.healthcheck import probe

    url = args.url or f"http://127.0.0.1:{Settings().port}/health/ready"
    return probe(url, args.timeout)


def _predict(args: argparse.Namespace) -> int:
    from app.cli.predict import run_predict
    from app.client import DEFAULT_URL  # the client needs httpx only: no torch, no server code

    url = args.url or os.environ.get("RESNET_SERVE_URL") or DEFAULT_URL
    api_key = args.api_key or os.environ.get("RESNET_SERVE_API_KEY")
    return run_predict(
        args.images,
        url,
        api_key,
        args.top_k,
        args.concurrency,
        args.json,
        bundle=args.bundle,
        output=args.output,
    )


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="resnet-serve",
        description="Serve, fine-tune and evaluate ResNet image classifiers.",
        epilog="Run 'resnet-serve COMMAND --help' for a command's options.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="serve a model bundle over HTTP",
        description="Serve the bundle in --model-dir (default: the demo model). Every option can "
        "also be set by its RESNET_SERVE_* environment variable; options win.",
    )
    _add_setting_options(serve)
    serve.set_defaults(handler=_serve)

    health = commands.add_parser(
        "healthcheck",
        help="exit 0 if the local server is ready, 1 otherwise (for container HEALTHCHECKs)",
    )
    health.add_argument("--url", help="default: http://127.0.0.1:$RESNET_SERVE_PORT/health/ready")
    health.add_argument("--timeout", type=float, default=2.0, help="seconds (default: 2)")
    health.set_defaults(handler=_healthcheck)

    predict = commands.add_parser(
        "predict",
        help="classify images with a running server, or with a bundle here",
        description="Send each image to a server's /predict (several at once), or classify it here "
        "with --bundle, and print its top labels. Exit 0 when every image was classified, 1 if any "
        "failed, 2 if none could be.",
    )
    predict.add_argument(
        "images",
        nargs="+",
        metavar="IMAGE",
        help="image files, or directories searched recursively for "
        ".jpg/.jpeg/.png/.webp/.bmp/.gif/.tif/.tiff",
    )
    predict.add_argument(
        "--url",
        help="the server (env RESNET_SERVE_URL, default http://127.0.0.1:8000)",
    )
    predict.add_argument(
        "--bundle",
        type=Path,
        help="classify here with this bundle folder, no server (loads torch)",
    )
    predict.add_argument(
        "--output",
        type=Path,
        help="also write the results to this file: CSV if it ends in .csv, else JSON lines",
    )
    predict.add_argument(
        "--api-key",
        help="sent as 'Authorization: Bearer' (env RESNET_SERVE_API_KEY)",
    )
    predict.add_argument(
        "--top-k", type=_positive_int, help="labels per image (default: the server's, 5)"
    )
    predict.add_argument(
        "--concurrency",
        type=_positive_int,
        default=8,
        help="requests in flight at once, one image each (default: 8)",
    )
    predict.add_argument(
        "--json", action="store_true", help="print one JSON document instead of a table"
    )
    predict.set_defaults(handler=_predict)

    for name, summary in TRAINING_COMMANDS.items():
        commands.add_parser(name, help=summary, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command and return its exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in TRAINING_COMMANDS:
        from app.cli.training import main as training_main

        return training_main(argv)
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except ValidationError as exc:
        for problem in exc.errors():
            name = ".".join(str(part) for part in problem["loc"]) or "settings"
            print(f"error: invalid setting {name}: {problem['msg']}", file=sys.stderr)
        return EXIT_ERROR
