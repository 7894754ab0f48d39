"""Admission at the door: bounded requests, images and decode work, refused in microseconds.

A request is admitted (or refused with ``OverloadedError``) before its body is read, as one request
holding one image and the body bytes it declares (``body_reservation``). Once its body is parsed it
reserves the rest of its images, and once its image headers are read it reserves their decode cost
in pixels. Everything is returned when the request
ends, whatever the outcome. Refusing at the door is what keeps a 503 fast under overload: a refused
request never waits for the decode pool or the batcher to find out that there is no room.

No HTTP and no torch here; the route maps ``OverloadedError`` to 503 with ``Retry-After``.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.serving.numbers import plain_count

MIN_RETRY_AFTER_S = 0.05
MAX_RETRY_AFTER_S = 30.0
SMOOTHING = 0.2  # weight of the newest batch in the per-image time estimate


class OverloadedError(Exception):
    """The server is at one of its bounds; retry after ``retry_after_s``."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class AdmissionLimits:
    max_requests: int
    max_images: int
    max_decode_pixels: int
    max_body_bytes: int  # of all admitted requests together


def body_reservation(declared: str | bytes | None, max_body_bytes: int) -> int:
    """The body bytes a request holds from admission: its ``Content-Length``, or the per-request
    limit when it declares none (a chunked upload may send that much). A declared length over the
    limit reserves nothing: such a request is answered 413 before it reads a byte, and must not be
    told 503 (come back later) for a body that can never fit."""
    length = plain_count(declared)
    if length is None:
        return max_body_bytes
    return length if length <= max_body_bytes else 0


class AdmissionGate:
    """Counts what admitted requests hold; ``admit`` refuses once a bound would be passed.

    One per server, shared by every model and version it serves: the bounds are of the process's
    memory and decode threads, whichever model a request is for.
    """

    def __init__(self, limits: AdmissionLimits, batches_in_flight: int = 1) -> None:
        self.limits = limits
        self.requests = 0
        self.images = 0
        self.decode_pixels = 0
        self.body_bytes = 0
        self._parallel_batches = batches_in_flight
        self._seconds_per_image = 0.01  # replaced by measurements after the first batch

    def refusal(self, body_bytes: int = 0) -> OverloadedError | None:
        """Why a request of ``body_bytes`` arriving now would be refused, without admitting it
        (None: it fits). When no body is held, any one fits: the per-request limit is the cap."""
        limits = self.limits
        if self.requests >= limits.max_requests:
            reason = f"{self.requests} requests are in flight; the limit is {limits.max_requests}"
        elif self.images >= limits.max_images:
            reason = f"{self.images} images are admitted; the limit is {limits.max_images}"
        elif self.decode_pixels >= limits.max_decode_pixels:
            reason = self.decode_queue_full
        elif self.body_bytes and self.body_bytes + body_bytes > limits.max_body_bytes:
            reason = (
                f"{self.body_bytes} bytes of request bodies are admitted; the limit is "
                f"{limits.max_body_bytes}"
            )
        else:
            return None
        return self._overloaded(reason)

    def admit(self, body_bytes: int = 0) -> Ticket:
        """Admit one request holding one image and ``body_bytes``, or raise ``OverloadedError``."""
        if refused := self.refusal(body_bytes):
            raise refused
        self.requests += 1
        self.images += 1
        self.body_bytes += body_bytes
        return Ticket(self, body_bytes)

    def record_batch(self, batch_size: int, compute_s: float) -> None:
        """Feed the per-image time estimate behind ``Retry-After`` from a finished batch."""
        sample = compute_s / max(batch_size, 1)
        self._seconds_per_image += SMOOTHING * (sample - self._seconds_per_image)

    @property
    def retry_after_s(self) -> float:
        """Roughly when the work admitted now will have been answered."""
        estimate = self.images * self._seconds_per_image / self._parallel_batches
        return min(max(estimate, MIN_RETRY_AFTER_S), MAX_RETRY_AFTER_S)

    @property
    def saturation(self) -> float:
        """The fullest bound's fill, 0..1 (1: new requests are being refused)."""
        limits = self.limits
        return max(
            self.requests / limits.max_requests,
            self.images / limits.max_images,
            self.decode_pixels / limits.max_decode_pixels,
            self.body_bytes / limits.max_body_bytes,
        )

    @property
    def decode_queue_full(self) -> str:
        return (
            f"{self.decode_pixels} pixels are queued for decoding; the limit is "
            f"{self.limits.max_decode_pixels}"
        )

    def refuse(self, message: str) -> None:
        """Raise ``OverloadedError`` with the current retry estimate."""
        raise self._overloaded(message)

    def _overloaded(self, message: str) -> OverloadedError:
        return OverloadedError(
            f"server is at capacity ({message}); retry shortly", self.retry_after_s
        )


class Ticket:
    """What one admitted request holds; ``close`` returns all of it (idempotent)."""

    def __init__(self, gate: AdmissionGate, body_bytes: int = 0) -> None:
        self._gate = gate
        self.images = 1
        self.body_bytes = body_bytes
        self.decode_pixels = 0
        self.closed = False

    def hold_images(self, count: int) -> None:
        """Grow the request's share to ``count`` images, or raise ``OverloadedError``."""
        gate, extra = self._gate, count - self.images
        if extra > 0 and gate.images + extra > gate.limits.max_images:
            gate.refuse(
                f"{count} more images do not fit: {gate.images} of {gate.limits.max_images} admitted"
            )
        gate.images += extra
        self.images = count

    def hold_decode_pixels(self, pixels: int) -> None:
        """Reserve decode work, or raise ``OverloadedError``.

        A request arriving when nothing is decoding is always let in, so a request within the
        per-request budget can never be refused for good.
        """
        gate = self._gate
        if gate.decode_pixels and gate.decode_pixels + pixels > gate.limits.max_decode_pixels:
            gate.refuse(gate.decode_queue_full)
        gate.decode_pixels += pixels
        self.decode_pixels += pixels

    def release_decode_pixels(self, pixels: int) -> None:
        """Return the decode reservation of one image once it is decoded (or dropped)."""
        pixels = min(pixels, self.decode_pixels)
        self._gate.decode_pixels -= pixels
        self.decode_pixels -= pixels

    def __enter__(self) -> Ticket:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        gate = self._gate
        gate.requests -= 1
        gate.images -= self.images
        gate.decode_pixels -= self.decode_pixels
        gate.body_bytes -= self.body_bytes
        self.images = self.decode_pixels = self.body_bytes = 0
