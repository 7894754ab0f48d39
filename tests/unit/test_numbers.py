"""Counts from clients: plain ASCII digits or nothing, never an exception."""

from __future__ import annotations

import pytest

from app.serving.numbers import plain_count


@pytest.mark.parametrize(
    ("text", "count"),
    [
        ("0", 0),
        ("42", 42),
        (b"42", 42),
        ("007", 7),
        (None, None),
        ("", None),
        ("-1", None),
        ("1.0", None),
        (" 1", None),
        ("\u00b2", None),  # a digit to str.isdigit, not to int()
        ("\u0663", None),  # Arabic-Indic three
        ("9" * 5000, None),  # int() raises beyond 4,300 digits
    ],
)
def test_only_plain_ascii_digits_are_a_count(text: str | bytes | None, count: int | None) -> None:
    assert plain_count(text) == count
