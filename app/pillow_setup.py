"""Process-wide Pillow settings for untrusted uploads, applied once as the service starts.

Two things Pillow does by default would write raw lines to stderr, past the log formatters that
escape control characters and keep JSON lines whole, as often as a client likes:

- Between its own ceiling (``Image.MAX_IMAGE_PIXELS``) and twice that, Pillow only *warns* of a
  decompression bomb, once per distinct image size, and keeps a registry entry per warning. As
  an error, the image is refused like any other over the limit (``pillow_errors`` maps it).
- libtiff reports every corrupt compressed strip on stderr itself, beside the exception Pillow
  raises. Its handlers are set to none: the exception still comes, and is logged our way.
"""

from __future__ import annotations

import ctypes
import logging
import warnings
from pathlib import Path

from PIL import (
    Image,
    _imaging,  # noqa: F401  (loads the libtiff that Pillow decodes with)
)

logger = logging.getLogger(__name__)
MAPS = Path("/proc/self/maps")


def harden_pillow() -> None:
    """Bomb warnings become errors; libtiff's own stderr messages are switched off."""
    warnings.simplefilter("error", Image.DecompressionBombWarning)
    for path in _loaded_libtiffs():
        library = ctypes.CDLL(path)  # the same handle as the loaded copy: dlopen shares it
        for setter in (library.TIFFSetErrorHandler, library.TIFFSetWarningHandler):
            setter.argtypes, setter.restype = [ctypes.c_void_p], ctypes.c_void_p
            setter(None)


def _loaded_libtiffs() -> set[str]:
    """Paths of the libtiff copies in this process (Pillow's vendored one, or the system's);
    none where /proc is not there (not Linux): libtiff then keeps its stderr handlers."""
    try:
        lines = MAPS.read_text().splitlines()
    except OSError:
        return set()
    paths = {line.split(maxsplit=5)[-1] for line in lines if len(line.split(maxsplit=5)) == 6}
    return {path for path in paths if Path(path).name.startswith("libtiff")}
