"""``resnet-serve serve`` and ``healthcheck``: the server, and the probe that asks it whether it is ready.

serve has one ``--option`` per ``Settings`` field, so options and ``RESNET_SERVE_*`` variables cannot
drift; torch and uvicorn load only when it runs. healthcheck uses the standard library only.
"""

from __future__ import annotations

import argparse

from app.cli.commands import Commands
from app.cli.healthcheck import probe
from app.settings import Settings


def register(commands: Commands) -> None:
    serve = commands.add_parser(
        "serve",
        help="serve a model bundle over HTTP",
        description="Serve the bundle in --model-dir (default: the demo model). Every option can "
        "also be set by its RESNET_SERVE_* environment variable; options win.",
    )
    for name, field in Settings.model_fields.items():
        serve.add_argument(
            "--" + name.replace("_", "-"),
            dest=name,
            metavar=name.upper(),
            help=f"{field.description} (env RESNET_SERVE_{name.upper()}, default {field.default})",
        )
    serve.set_defaults(handler=_serve)

    health = commands.add_parser(
        "healthcheck",
        help="exit 0 if the local server is ready, 1 otherwise (for container HEALTHCHECKs)",
    )
    health.add_argument("--url", help="default: http://127.0.0.1:$RESNET_SERVE_PORT/health/ready")
    health.add_argument("--timeout", type=float, default=2.0, help="seconds (default: 2)")
    health.set_defaults(handler=_healthcheck)


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
    from app.edge.server import serve

    return serve(settings)


def _healthcheck(args: argparse.Namespace) -> int:
    url = args.url or f"http://127.0.0.1:{Settings().port}/health/ready"
    return probe(url, args.timeout)
