"""Process-wide Pillow settings for untrusted uploads, applied once as the service starts.

Two things Pillow does by default would write raw lines to stderr, past the log formatters that
escape control characters and keep JSON lines whole, as often as a client likes:

- Between its own decompression-bomb ceiling (``Image.MAX_IMAGE_PIXELS``, 89 MP) and twice that,
  Pillow only *warns*, once per distinct image size, keeping a registry entry per warning. The
  service checks ``MAX_IMAGE_PIXELS`` itself from the header before any pixel is decoded
  (``check_pixel_count``), so Pillow's own check is switched off: the configured limit is then the
  only one, above Pillow's ceiling too.
- libtiff reports every corrupt compressed strip on stderr itself, beside the exception Pillow
  raises. Its handlers are set to none: the exception still comes, and is logged our way.
"""

from __future__ import annotations

import ctypes
import logging
from pathlib import Path

from PIL import (
    Image,
    _imaging,  # noqa: F401  (loads the libtiff that Pillow decodes with)
)

logger = logging.getLogger(__name__)
MAPS = Path("/proc/self/maps")


def harden_pillow() -> None:
    """No bomb warnings from Pillow (the service's own pixel limit applies); libtiff quiet."""
    Image.MAX_IMAGE_PIXELS = None
    for path in _loaded_libtiffs():
        try:
            library = ctypes.CDLL(path)  # the same handle as the loaded copy: dlopen shares it
            setters = (library.TIFFSetErrorHandler, library.TIFFSetWarningHandler)
        except (OSError, AttributeError) as exc:
            logger.info("libtiff at %s keeps its stderr messages: %s", path, exc)
            continue
        for setter in setters:
            setter.argtypes, setter.restype = [ctypes.c_void_p], ctypes.c_void_p
            setter(None)


def _loaded_libtiffs() -> set[str]:
    """Paths of the libtiff copies in this process (Pillow's vendored one, or the system's);
    none where /proc is not there (not Linux): libtiff then keeps its stderr handlers."""
    try:
        lines = MAPS.read_text().splitlines()
    except OSError:
        return set()
    fields = (line.split(maxsplit=5) for line in lines)
    paths = {parts[5] for parts in fields if len(parts) == 6 and parts[5].startswith("/")}
    # A library replaced on disk since it was loaded shows as "path (deleted)": not openable.
    return {path for path in paths if Path(path).name.startswith("libtiff") and Path(path).exists()}
