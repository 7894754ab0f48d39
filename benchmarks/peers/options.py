"""The command line both peer servers take, so the harness starts them the same way."""

from __future__ import annotations

import argparse
from pathlib import Path


def peer_options(doc: str | None) -> argparse.ArgumentParser:
    """``--host --port --model-dir --device --threads``, described by the peer's docstring."""
    parser = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--threads", type=int, required=True, help="torch intra-op threads")
    return parser
