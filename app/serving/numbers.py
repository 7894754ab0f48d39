"""Counts written by clients (a header's value, a query parameter), read without surprises."""

from __future__ import annotations

MAX_DIGITS = 18  # below int64 and far below the 4,300 digits at which int() raises


def plain_count(text: str | bytes | None) -> int | None:
    """``text`` as a non-negative integer when it is plain ASCII decimal digits, else None.

    ``str.isdigit`` alone accepts "²" and other digits ``int()`` refuses, and ``int()`` raises
    for more than 4,300 digits: either would turn a client's typo into a server error.
    """
    if text is None or not text.isascii() or not text.isdigit() or len(text) > MAX_DIGITS:
        return None
    return int(text)
