"""Write the ``--input-data`` JSON that Triton's perf_analyzer needs to send images to ``IMAGE``.

perf_analyzer cannot read image files itself, and for a BYTES input it does not take the file's
bytes as they are: each element must be in Triton's serialized form (a 4-byte little-endian length,
then the bytes), base64-encoded under ``"b64"``. Getting that wrong makes every request fail to
decode, so the README's command and the perf_analyzer test both build the file here::

    python -m benchmarks.perf_analyzer_input photo.jpg [more.jpg ...] > input.json
    perf_analyzer -m demo -u 127.0.0.1:8001 -i grpc --input-data input.json --concurrency-range 1

Each file becomes one entry of ``data``: perf_analyzer cycles through them, one image a request.
"""

from __future__ import annotations

import base64
import json
import struct
import sys
from collections.abc import Iterable
from pathlib import Path

INPUT = "IMAGE"


def serialized_bytes_element(payload: bytes) -> bytes:
    """One BYTES tensor element as Triton serializes it: a little-endian uint32 length, then data."""
    return struct.pack("<I", len(payload)) + payload


def perf_analyzer_input(images: Iterable[bytes]) -> dict[str, list[dict[str, dict[str, str]]]]:
    """The ``--input-data`` document: one request per encoded image, each a batch of one."""
    data = [
        {INPUT: {"b64": base64.b64encode(serialized_bytes_element(image)).decode("ascii")}}
        for image in images
    ]
    if not data:
        raise ValueError("perf_analyzer needs at least one image")
    return {"data": data}


def main(argv: list[str] | None = None) -> int:
    paths = sys.argv[1:] if argv is None else argv
    if not paths:
        print(__doc__, file=sys.stderr)
        return 2
    json.dump(perf_analyzer_input(Path(p).read_bytes() for p in paths), sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
