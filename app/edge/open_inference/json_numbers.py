"""Read a v2 JSON header in two steps: its structure first, its long arrays of numbers later.

A JSON body of the protocol is mostly one array of numbers, a ``PIXELS`` tensor's ``data``: millions
of them in a body within the size limit. ``json.loads`` makes each a Python object in one call that
holds the GIL throughout, on a worker thread too (eight 6 MB bodies loaded on threads stalled the
event loop 170-210 ms at a time, measured), and before the request's declared shape can be checked
against the limits. Here ``skim`` parses the structure and leaves each long array of numbers as
``NumberText``, a span of the text found by a regular expression; the codec checks the declared
shape, and only then ``read_numbers`` parses the numbers, a piece at a time, so that the GIL
passes back to the event loop between pieces.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

# Undocumented but stable from 3.11 to 3.13 (see the module docstring).
from json.decoder import JSONArray, JSONObject  # type: ignore[attr-defined]  # not in typeshed
from json.scanner import py_make_scanner  # type: ignore[attr-defined]  # not in typeshed
from typing import Any

import numpy as np

# The characters of a JSON array of numbers between its brackets. What they spell is checked when
# the numbers are read; an array of anything else has some other character in it.
NUMBER_CHARS = re.compile(r"[0-9eE.+\-, \t\n\r]*")
SHORT_ARRAY_CHARS = 256  # read at once (a shape, a row of nested pixels): a C call of microseconds
SCAN_CHARS = 1 << 20  # one regular-expression match: about a millisecond of GIL
PIECE_CHARS = 1 << 16  # numbers read by one json.loads: about 20,000, well under a millisecond
Scan = Callable[[str, int], tuple[Any, int]]


class TooManyValuesError(ValueError):
    """The structure of a header has more values than any request the model can take."""


@dataclass(frozen=True)
class NumberText:
    """A JSON array of numbers not read yet: its elements are ``text[start:end]``."""

    text: str
    start: int
    end: int

    def count(self) -> int:
        """How many numbers its commas separate (a malformed array is caught when it is read)."""
        commas = self.text.count(",", self.start, self.end)
        if commas == 0 and self.text[self.start : self.end].strip(" \t\n\r") == "":
            return 0
        return commas + 1

    def pieces(self) -> Iterator[list[Any]]:
        """The numbers, about ``PIECE_CHARS`` of text at a time, cut at commas; ``ValueError``
        for anything that is not a JSON number."""
        start = self.start
        while start < self.end:
            cut = self.text.find(",", start + PIECE_CHARS, self.end)
            stop = self.end if cut < 0 else cut
            yield json.loads(f"[{self.text[start:stop]}]")
            start = stop + 1
        # A comma cut off at the very end leaves one number fewer than ``count``: the reader's
        # final count check catches it.


def _numbers_end(text: str, start: int) -> int:
    """Where the run of number characters from ``start`` ends, matched a window at a time so
    that no one match holds the GIL for long."""
    end = start
    while True:
        window = min(end + SCAN_CHARS, len(text))
        match = NUMBER_CHARS.match(text, end, window)  # never None: the pattern matches ""
        end = match.end() if match else end
        if end < window or window == len(text):
            return end


class _Skimmer(json.JSONDecoder):
    """The standard library's pure-Python scanner, with arrays of numbers left unread."""

    def __init__(self, max_values: int) -> None:
        super().__init__()
        self.values, self.max_values = 0, max_values
        self.parse_array = self._array
        self.parse_object = self._object
        self.scan_once = py_make_scanner(self)

    def _counted(self, scan_once: Scan) -> Scan:
        """``scan_once`` for the elements of a container, each one counted against the budget:
        the pure-Python scanner costs about a microsecond a value."""

        def scan(text: str, index: int) -> tuple[Any, int]:
            self.values += 1
            if self.values > self.max_values:
                raise TooManyValuesError(f"request header holds over {self.max_values} values")
            return scan_once(text, index)

        return scan

    def _array(self, text_and_start: tuple[str, int], scan_once: Scan) -> tuple[Any, int]:
        text, start = text_and_start
        end = _numbers_end(text, start)
        if end > start and text[end : end + 1] == "]":
            if end - start > SHORT_ARRAY_CHARS:
                return NumberText(text, start, end), end + 1
            try:
                return json.loads(text[start - 1 : end + 1]), end + 1
            except json.JSONDecodeError as exc:
                raise json.JSONDecodeError(exc.msg, text, start - 1 + exc.pos) from None
        # Anything else, value by value within the budget: an array of a million numbers and a
        # string costs no more than one of a million strings.
        return JSONArray(text_and_start, self._counted(scan_once))

    def _object(
        self, text_and_start: tuple[str, int], strict: bool, scan_once: Scan, *hooks: Any
    ) -> tuple[Any, int]:
        return JSONObject(text_and_start, strict, self._counted(scan_once), *hooks)


def skim(raw: bytes, max_values: int) -> Any:
    """``raw`` parsed as JSON (any encoding ``json.loads`` takes) with each array of numbers longer
    than ``SHORT_ARRAY_CHARS`` left as ``NumberText``; ``TooManyValuesError`` past ``max_values``
    values outside those arrays, and ``json.loads``'s errors for text that is not JSON."""
    text = raw.decode(json.detect_encoding(raw), "surrogatepass")
    return _Skimmer(max_values).decode(text)


def _leaves(data: Any) -> Iterator[list[Any] | NumberText]:
    """The arrays of numbers in ``data``, nested or not, in row-major order."""
    if isinstance(data, NumberText):
        yield data
    elif not isinstance(data, list):
        raise ValueError("not an array")
    elif all(type(item) in (int, float) for item in data):
        yield data
    else:
        for item in data:
            if type(item) in (int, float):
                yield [item]
            else:
                yield from _leaves(item)


def count_numbers(data: Any) -> int:
    """How many numbers ``data`` holds (as ``skim`` left it), without reading them."""
    return sum(
        leaf.count() if isinstance(leaf, NumberText) else len(leaf) for leaf in _leaves(data)
    )


def read_numbers(data: Any, count: int) -> np.ndarray:
    """The ``count`` numbers of ``data`` (as ``skim`` left it, nested or not) as float64s, read a
    piece at a time; ``ValueError`` (or ``OverflowError``) for anything else."""
    numbers = np.empty(count, dtype=np.float64)
    filled = 0
    for leaf in _leaves(data):
        for piece in leaf.pieces() if isinstance(leaf, NumberText) else [leaf]:
            if filled + len(piece) > count:
                raise ValueError("more numbers than counted")
            numbers[filled : filled + len(piece)] = piece
            filled += len(piece)
    if filled != count:
        raise ValueError("fewer numbers than counted")
    return numbers
