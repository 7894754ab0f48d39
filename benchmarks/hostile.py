"""The traffic of the soak: valid requests and the abuse the service must answer (or shrug off).

Each ``Probe`` is one kind of request, how often it is sent, and the outcomes that count as handled.
Kinds that stay inside HTTP go through aiohttp; kinds that break HTTP itself (a body shorter than
its Content-Length, a header dribble, a disconnect, an oversized head, junk bytes) are written on a
raw asyncio stream, since no HTTP client will send them. Limits are read from the ``Settings``
defaults, so a probe stays just past its limit when a default changes.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import random
import struct
import zlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import aiohttp

from app.settings import Settings
from benchmarks import stress
from benchmarks.bodies import encode
from benchmarks.images import photo_like

CLOSED = "closed"  # the server closed the connection without an answer
ABANDONED = "abandoned"  # the client left mid-upload; no answer expected
MALFORMED = "malformed"  # bytes came back, but not an HTTP status line
DRIBBLE_PAUSE_S = 0.25
ABANDON_AFTER_S = 0.05  # long enough for the server to admit the request and start reading it
DEFAULTS = {name: info.default for name, info in Settings.model_fields.items()}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
V2_MODEL = "demo"  # the bundled model the soak serves


@dataclass(frozen=True)
class Target:
    """Where probes go, and how long a raw-socket probe waits for its answer."""

    session: aiohttp.ClientSession
    host: str
    port: int
    server_timeout_s: float  # the server's header and upload timeouts (the soak sets both)
    answer_timeout_s: float
    rng: random.Random

    @property
    def url(self) -> str:
        return self.at("/predict")

    def at(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"


Send = Callable[[Target], Awaitable[str]]


@dataclass(frozen=True)
class Probe:
    """One kind of traffic: its share of the mix and the outcomes that mean it was handled."""

    name: str
    weight: int
    expected: frozenset[str]
    send: Send


def png(image_seed: int, width: int = 160, height: int = 120) -> bytes:
    buffer = io.BytesIO()
    photo_like(image_seed, width, height).save(buffer, "PNG")
    return buffer.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data)
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def png_bomb(width: int = 50_000, height: int = 50_000) -> bytes:
    """A valid PNG head claiming ``width`` x ``height`` RGB, with 1 MiB of zeros as its data."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    data = zlib.compress(bytes(1 << 20), 9)
    return PNG_SIGNATURE + b"".join(
        [_png_chunk(b"IHDR", header), _png_chunk(b"IDAT", data), _png_chunk(b"IEND", b"")]
    )


def form(files: Sequence[bytes], content_type: str = "image/png") -> aiohttp.FormData:
    """A multipart form with each of ``files`` as a ``files`` part (built per request: aiohttp
    consumes a form when it sends it)."""
    data = aiohttp.FormData()
    for index, content in enumerate(files):
        data.add_field("files", content, filename=f"{index}.png", content_type=content_type)
    return data


def head(content_type: str, length: int, extra: str = "") -> bytes:
    """The request line and headers of a POST /predict, as a raw client would write them."""
    return (
        "POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {length}\r\n{extra}\r\n"
    ).encode()


async def _status(reader: asyncio.StreamReader) -> str:
    """The status code of the answer, ``CLOSED`` at end of stream, or a transport error."""
    try:
        line = await reader.readline()
    except ConnectionError:
        return stress.CONN_ERROR
    if not line:
        return CLOSED
    parts = line.split()
    if len(parts) >= 2 and parts[0].startswith(b"HTTP/") and parts[1].isdigit():
        return parts[1].decode()
    return MALFORMED


async def exchange(target: Target, pieces: Sequence[bytes], pause_s: float = 0.0) -> str:
    """Write ``pieces`` on a fresh connection, ``pause_s`` apart, and return how it was answered.

    The answer is read while writing: a server that answers early (431, 408) and closes would
    otherwise reset the connection under a client still writing, and the reset can discard the
    answer from the client's buffer.
    """
    try:
        reader, writer = await asyncio.open_connection(target.host, target.port)
    except OSError:
        return stress.CONN_ERROR
    answer = asyncio.ensure_future(_status(reader))
    try:
        for piece in pieces:
            if answer.done():
                break
            writer.write(piece)
            await writer.drain()
            if pause_s:
                await asyncio.wait({answer}, timeout=pause_s)
    except ConnectionError:
        pass  # the server stopped listening to us; what it answered is still read below
    try:
        return await asyncio.wait_for(answer, target.answer_timeout_s)
    except TimeoutError:
        return stress.TIMEOUT
    finally:
        writer.close()


async def abandon(target: Target, piece: bytes) -> str:
    """Write ``piece`` (a head and part of its body) and leave without waiting for an answer."""
    try:
        _, writer = await asyncio.open_connection(target.host, target.port)
    except OSError:
        return stress.CONN_ERROR
    writer.write(piece)
    await writer.drain()
    await asyncio.sleep(ABANDON_AFTER_S)
    writer.close()
    return ABANDONED


def probes(jpegs: Sequence[bytes], pngs: Sequence[bytes]) -> tuple[Probe, ...]:
    """The soak's mix: about half valid requests, the rest one kind of abuse each."""
    bomb, jpeg, tiny, bodies = png_bomb(), jpegs[0], png(0, 64, 64), encode(jpegs, "multipart")
    too_many = [tiny] * (DEFAULTS["max_images_per_request"] + 1)
    big_head = "X-Padding: " + "a" * (DEFAULTS["max_header_bytes"] + 1024) + "\r\n"

    v2_bodies = [
        json.dumps(
            {"inputs": [{"name": "IMAGE", "shape": [1], "datatype": "BYTES", "data": [encoded]}]}
        ).encode()
        for encoded in (base64.b64encode(image).decode() for image in jpegs)
    ]

    async def post(
        target: Target, data: object, content_type: str | None = None, path: str = "/predict"
    ) -> str:
        return (await stress.post(target.session, target.at(path), data, content_type)).outcome

    def v2_infer(t: Target, body: bytes) -> Awaitable[str]:
        return post(t, body, "application/json", f"/v2/models/{V2_MODEL}/infer")

    def valid_jpeg(t: Target) -> Awaitable[str]:
        body = t.rng.choice(bodies)
        return post(t, body.data, body.content_type)

    def dribble(t: Target) -> Awaitable[str]:
        count = round(2 * t.server_timeout_s / DRIBBLE_PAUSE_S)
        pieces = [b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ", *[b"a"] * count]
        return exchange(t, pieces, DRIBBLE_PAUSE_S)

    def probe(name: str, weight: int, expected: str, send: Send) -> Probe:
        return Probe(name, weight, frozenset(expected.split()), send)

    return (
        probe("valid jpeg", 40, "200", valid_jpeg),
        probe("valid png x3", 10, "200", lambda t: post(t, form(t.rng.sample(pngs, 3)))),
        probe("v2 infer json", 6, "200", lambda t: v2_infer(t, t.rng.choice(v2_bodies))),
        probe("v2 json nested too deep", 2, "400", lambda t: v2_infer(t, b"[" * 100_000)),
        # Three explanations may wait at once; one more is refused (503 explain_busy), not queued.
        probe("explain", 2, "200 503", lambda t: post(t, jpeg, "image/jpeg", path="/explain")),
        probe("garbage bytes", 6, "400", lambda t: post(t, t.rng.randbytes(4096), "image/jpeg")),
        probe("truncated jpeg", 6, "400", lambda t: post(t, jpeg[: len(jpeg) // 2], "image/jpeg")),
        probe("png bomb header", 5, "413", lambda t: post(t, bomb, "image/png")),
        probe("too many images", 4, "413", lambda t: post(t, form(too_many))),
        probe("wrong content type", 5, "415", lambda t: post(t, b"hello", "text/plain")),
        probe(
            "body short of length",
            3,
            "408",
            lambda t: exchange(t, [head("image/jpeg", len(jpeg)) + jpeg[: len(jpeg) // 2]]),
        ),
        probe("header dribble", 3, f"408 {CLOSED}", dribble),
        probe(
            "disconnect mid-upload",
            4,
            ABANDONED,
            lambda t: abandon(t, head("image/jpeg", len(jpeg)) + jpeg[:4096]),
        ),
        probe(
            "oversized header",
            4,
            "431",
            lambda t: exchange(t, [head("image/jpeg", len(jpeg), big_head) + jpeg]),
        ),
        probe("junk as HTTP", 4, "400", lambda t: exchange(t, [t.rng.randbytes(512)])),
    )
