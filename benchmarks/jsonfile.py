"""Results files that are whole whenever they can be read.

A benchmark step rewrites its JSON file after each part it finishes, so that one stopped by a time
limit keeps what it measured. Written in place, a stop in the middle of a write would leave a
truncated file and lose the earlier parts too; written beside and renamed over (one atomic step on
POSIX), the file is always the last complete version.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def write_json(path: Path, value: object) -> None:
    """``value`` as indented JSON in ``path``, replacing what was there in one step."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(value, indent=2) + "\n")
    os.replace(partial, path)
