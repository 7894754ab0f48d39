"""``resnet-serve predict``: find the images, classify them concurrently, print a table or JSON.

One request per image, so one bad file fails only its own line. The client (httpx) is imported only
when the command runs: ``app.cli.main`` imports this module to register the command, and so does
every ``resnet-serve healthcheck``, which must stay cheap.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from app.cli.commands import EXIT_ERROR, Commands

if TYPE_CHECKING:
    from app.client.models import ImageResult

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
EXIT_OK, EXIT_FAILED = 0, 1
# 128 + SIGPIPE: what a shell reports for a Unix tool whose reader left (`yes | head -1`), so a
# `set -o pipefail` script sees this command as it sees any other. Not 0: some lines went unread.
EXIT_STDOUT_CLOSED = 141


@dataclass(frozen=True)
class Outcome:
    """One image's line: its result, or the error code and message that replaced it."""

    path: Path
    result: ImageResult | None = None
    code: str = ""
    message: str = ""


def find_images(arguments: Sequence[str]) -> list[Path]:
    """Files as given (any name); directories searched recursively for image suffixes, sorted."""
    found: list[Path] = []
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            images = (p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
            found += sorted(p for p in images if p.is_file())
        elif path.is_file():
            found.append(path)
        else:
            raise FileNotFoundError(f"{argument}: no such file or directory")
    return found


async def classify_all(
    paths: Sequence[Path],
    url: str,
    api_key: str | None,
    top_k: int | None,
    concurrency: int,
    model: str | None = None,
) -> list[Outcome]:
    """Classify every path, at most ``concurrency`` requests at a time, in the order given.

    A failed image becomes an ``Outcome`` with its error; an unreachable server cancels the rest
    and raises ``ResnetConnectionError``: every other request would fail the same way.
    """
    from app.client.client import AsyncResnetClient
    from app.client.models import ResnetConnectionError, ResnetServeError

    limit = asyncio.Semaphore(concurrency)

    async def classify(client: AsyncResnetClient, path: Path) -> Outcome:
        async with limit:
            try:
                return Outcome(path, (await client.predict(path, top_k)).results[0])
            except ResnetServeError as exc:
                return Outcome(path, code=exc.code, message=exc.message)
            except OSError as exc:
                return Outcome(path, code="unreadable", message=exc.strerror or str(exc))

    async with AsyncResnetClient(url, api_key, model=model) as client:
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(classify(client, path)) for path in paths]
        except* ResnetConnectionError as failures:
            raise failures.exceptions[0] from None
    return [task.result() for task in tasks]


NONE_OF_THESE = "none of these"


def format_table(outcomes: Sequence[Outcome]) -> str:
    """One line per image: path, top label, its score, then the other top-k labels and scores.

    An abstained answer (unsure, or a "none of these" class) reads ``none of these`` where the top
    label goes, its scores after it and ``(abstained)`` at the end.
    """
    path_width = max(len(str(outcome.path)) for outcome in outcomes)
    label_width = max(
        [len(o.result.top.label) for o in outcomes if o.result]
        + [len(NONE_OF_THESE) for o in outcomes if o.result and o.result.abstained]
        + [len("error")],
        default=0,
    )
    lines = []
    for outcome in outcomes:
        path = str(outcome.path).ljust(path_width)
        if outcome.result is None:
            lines.append(f"{path}  {'error'.ljust(label_width)}  {outcome.code}: {outcome.message}")
            continue
        top, *others = outcome.result.predictions
        rest = "".join(f"  {p.label} {p.score:.3f}" for p in others)
        if outcome.result.abstained:
            scores = f"{top.label} {top.score:.3f}{rest}"
            lines.append(f"{path}  {NONE_OF_THESE.ljust(label_width)}  {scores}  (abstained)")
        else:
            lines.append(f"{path}  {top.label.ljust(label_width)}  {top.score:.3f}{rest}")
    return "\n".join(lines)


def _document(outcome: Outcome) -> dict[str, object]:
    if outcome.result is None:
        error = {"code": outcome.code, "message": outcome.message}
        return {"path": str(outcome.path), "error": error}
    predictions = [asdict(p) for p in outcome.result.predictions]
    return {
        "path": str(outcome.path),
        "predictions": predictions,
        "abstained": outcome.result.abstained,
    }


def format_json(outcomes: Sequence[Outcome]) -> str:
    return json.dumps([_document(outcome) for outcome in outcomes], indent=2)


def write_output(outcomes: Sequence[Outcome], path: Path) -> None:
    """``.csv``: one row per image (path, top label, score, index, abstained, error); otherwise
    JSON lines."""
    with path.open("w", newline="", encoding="utf-8") as file:
        if path.suffix.lower() != ".csv":
            file.writelines(json.dumps(_document(outcome)) + "\n" for outcome in outcomes)
            return
        writer = csv.writer(file)
        writer.writerow(["path", "label", "score", "index", "abstained", "error"])
        for outcome in outcomes:
            if outcome.result is None:
                error = f"{outcome.code}: {outcome.message}"
                writer.writerow([outcome.path, "", "", "", "", error])
            else:
                top, abstained = outcome.result.top, str(outcome.result.abstained).lower()
                score = f"{top.score:.6f}"
                writer.writerow([outcome.path, top.label, score, top.index, abstained, ""])


def _print_results(text: str) -> bool:
    """Print ``text`` to stdout; False (and no traceback) when its reader has gone (``| head``)."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        # Python flushes stdout again on the way out, which would fail the same way; /dev/null
        # takes what is left instead.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return False
    return True


def register(commands: Commands) -> None:
    predict = commands.add_parser(
        "predict",
        help="classify images with a running server, or with a bundle here",
        description="Send each image to a server's /predict (several at once), or classify it here "
        "with --bundle, and print its top labels. Exit 0 when every image was classified, 1 if any "
        "failed, 2 if none could be.",
    )
    add = predict.add_argument
    add(
        "images",
        nargs="+",
        metavar="IMAGE",
        help="image files, or directories searched recursively for "
        ".jpg/.jpeg/.png/.webp/.bmp/.gif/.tif/.tiff",
    )
    add("--url", help="the server (env RESNET_SERVE_URL, default http://127.0.0.1:8000)")
    add(
        "--bundle", type=Path, help="classify here with this bundle folder, no server (loads torch)"
    )
    add(
        "--output",
        type=Path,
        help="also write the results to this file: CSV if it ends in .csv, else JSON lines",
    )
    add("--api-key", help="sent as 'Authorization: Bearer' (env RESNET_SERVE_API_KEY)")
    add("--model", help="the server's model to run, when it serves several (GET /model lists them)")
    add("--top-k", type=_positive_int, help="labels per image (default: the server's, 5)")
    add(
        "--concurrency",
        type=_positive_int,
        default=8,
        help="requests in flight at once, one image each (default: 8)",
    )
    add("--json", action="store_true", help="print one JSON document instead of a table")
    predict.set_defaults(handler=run_predict)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def run_predict(args: argparse.Namespace) -> int:
    """The command: 0 when every image was classified, 1 if any failed, 2 when nothing could run,
    141 when stdout closed early.

    With ``--bundle`` the images are classified here, with no server; with ``--output`` the
    results are also written to a CSV or JSON-lines file.
    """
    try:
        paths = find_images(args.images)
    except FileNotFoundError as exc:
        return _refuse(exc)
    if not paths:
        return _refuse(f"no images found in {' '.join(args.images)}")
    if args.bundle is not None:
        # Local classification loads torch; the client alone never does.
        from app.cli.offline import classify_files
        from app.model.bundle import BundleError
        from app.model.devices import DeviceError

        try:
            outcomes = classify_files(paths, args.bundle, args.top_k)
        except (BundleError, DeviceError) as exc:
            return _refuse(exc)
    else:
        from app.client.client import DEFAULT_URL
        from app.client.models import ResnetConnectionError

        url = args.url or os.environ.get("RESNET_SERVE_URL") or DEFAULT_URL
        api_key = args.api_key or os.environ.get("RESNET_SERVE_API_KEY")
        try:
            outcomes = asyncio.run(
                classify_all(paths, url, api_key, args.top_k, args.concurrency, args.model)
            )
        except ResnetConnectionError as exc:
            return _refuse(exc)
    if args.output is not None:  # first: a reader that closes stdout early must not cost the file
        write_output(outcomes, args.output)
    if not _print_results(format_json(outcomes) if args.json else format_table(outcomes)):
        return EXIT_STDOUT_CLOSED
    failed = sum(outcome.result is None for outcome in outcomes)
    if failed:
        print(f"{failed} of {len(outcomes)} images failed", file=sys.stderr)
    return EXIT_FAILED if failed else EXIT_OK


def _refuse(problem: object) -> int:
    """Nothing could be classified: one ``error:`` line, and the usage status."""
    print(f"error: {problem}", file=sys.stderr)
    return EXIT_ERROR
