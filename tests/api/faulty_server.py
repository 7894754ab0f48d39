"""``python -m tests.api.faulty_server``: the real server, with a model that fails on cue.

Only batches holding a black image (all pixels 0, which warm-up never sends) misbehave, as the
``FAULT`` variable says: ``stuck`` (the forward pass never returns), ``fail`` (it raises) or ``oom``
(CUDA out-of-memory for any such batch of more than one image, which the runner must split);
``warmup`` fails every forward pass, warm-up's first, with internals in its message.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Sequence

import torch

from app.edge.server import serve
from app.serving.builder import load_runner
from app.serving.runner import ModelRunner
from app.settings import Settings

NEVER = threading.Event()
WARMUP_FAILURE = "CUDA error at /opt/secret/kernels.cu:42 (simulated)"


def _poisoned(images: Sequence[torch.Tensor]) -> bool:
    return any(int(image.max()) == 0 for image in images)


def load_faulty(settings: Settings) -> ModelRunner:
    runner = load_runner(settings)
    fault = os.environ["FAULT"]
    forward = runner._forward

    def faulty_forward(images: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        if fault == "warmup":
            raise RuntimeError(WARMUP_FAILURE)
        if _poisoned(images):
            if fault == "stuck":
                NEVER.wait()
            if fault == "fail":
                raise RuntimeError("simulated failure of a forward pass")
            if fault == "oom" and len(images) > 1:
                raise torch.cuda.OutOfMemoryError("simulated CUDA out of memory")
        return forward(images)

    runner._forward = faulty_forward  # type: ignore[method-assign]
    return runner


if __name__ == "__main__":
    sys.exit(serve(Settings(), load=load_faulty))
