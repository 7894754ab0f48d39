"""AdmissionGate: bounds checked on arrival, everything returned when a request ends."""

from __future__ import annotations

import pytest

from app.serving.admission import (
    MAX_RETRY_AFTER_S,
    MIN_RETRY_AFTER_S,
    AdmissionGate,
    AdmissionLimits,
    OverloadedError,
    body_reservation,
)


def _gate(
    requests: int = 4, images: int = 8, pixels: int = 1000, body_bytes: int = 10_000
) -> AdmissionGate:
    return AdmissionGate(AdmissionLimits(requests, images, pixels, body_bytes))


def test_requests_beyond_the_limit_are_refused_at_the_door() -> None:
    gate = _gate(requests=2)
    first, second = gate.admit(), gate.admit()
    with pytest.raises(OverloadedError, match="2 requests are in flight; the limit is 2"):
        gate.admit()
    first.close()
    gate.admit()  # room again as soon as one ends
    second.close()


def test_images_of_admitted_requests_count_against_the_image_bound() -> None:
    gate = _gate(images=8)
    ticket = gate.admit()
    ticket.hold_images(7)
    assert gate.images == 7
    gate.admit()
    with pytest.raises(OverloadedError, match="8 images are admitted"):
        gate.admit()
    with pytest.raises(OverloadedError):
        ticket.hold_images(9)
    assert gate.images == 8 and ticket.images == 7  # a refused growth holds nothing more


def test_decode_pixels_are_bounded_but_an_idle_decoder_always_takes_a_request() -> None:
    gate = _gate(pixels=1000)
    big, other = gate.admit(), gate.admit()
    big.hold_decode_pixels(1500)  # nothing else is decoding: let it in
    with pytest.raises(OverloadedError, match="1500 pixels are queued"):
        other.hold_decode_pixels(10)
    big.release_decode_pixels(1500)
    other.hold_decode_pixels(10)
    assert gate.decode_pixels == 10


def test_a_full_decode_queue_refuses_new_requests_at_the_door() -> None:
    gate = _gate(pixels=1000)
    busy = gate.admit()
    busy.hold_decode_pixels(1000)
    assert "1000 pixels are queued for decoding" in str(gate.refusal())
    with pytest.raises(OverloadedError, match="pixels are queued"):
        gate.admit()
    busy.release_decode_pixels(1)
    assert gate.refusal() is None


def test_body_bytes_of_admitted_requests_are_bounded_but_one_request_always_fits() -> None:
    gate = _gate(body_bytes=10_000)
    first = gate.admit(6_000)
    second = gate.admit(4_000)
    with pytest.raises(OverloadedError, match="10000 bytes of request bodies are admitted"):
        gate.admit(1)
    first.close()
    second.close()
    gate.admit(50_000).close()  # alone, any request fits: MAX_BODY_BYTES is its own cap
    assert gate.body_bytes == 0


@pytest.mark.parametrize(
    ("declared", "reserved"),
    [
        ("2048", 2048),
        (b"2048", 2048),
        (None, 10_000),  # chunked: it may send up to the limit
        ("-1", 10_000),
        ("9" * 40, 10_000),
        ("99999999", 0),  # over the limit: answered 413 before a byte is read
    ],
)
def test_a_request_reserves_its_declared_length_the_limit_or_nothing_when_over_it(
    declared: str | bytes | None, reserved: int
) -> None:
    assert body_reservation(declared, max_body_bytes=10_000) == reserved


def test_close_returns_everything_once() -> None:
    gate = _gate()
    with gate.admit() as ticket:
        ticket.hold_images(3)
        ticket.hold_decode_pixels(300)
        ticket.release_decode_pixels(100)
        assert (gate.requests, gate.images, gate.decode_pixels) == (1, 3, 200)
    ticket.close()
    assert (gate.requests, gate.images, gate.decode_pixels) == (0, 0, 0)


def test_retry_after_follows_the_measured_time_per_image_within_bounds() -> None:
    gate = _gate(images=1000, requests=1000)
    assert gate.retry_after_s == MIN_RETRY_AFTER_S  # nothing admitted
    for _ in range(50):
        gate.record_batch(batch_size=10, compute_s=0.2)  # 20 ms per image
    ticket = gate.admit()
    ticket.hold_images(100)
    assert gate.retry_after_s == pytest.approx(2.0, rel=0.01)
    gate.record_batch(batch_size=1, compute_s=10_000)
    assert gate.retry_after_s == MAX_RETRY_AFTER_S


def test_saturation_is_the_fullest_bound() -> None:
    gate = _gate(requests=4, images=8, pixels=1000)
    ticket = gate.admit()
    ticket.hold_images(6)
    assert gate.saturation == pytest.approx(0.75)
