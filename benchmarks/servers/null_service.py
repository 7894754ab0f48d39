"""resnet-serve with a model that answers at once: the ingress ceiling.

Everything a request costs outside the forward pass stays real (HTTP, multipart parsing, JPEG
decoding, preprocessing, batching, the JSON answer); only the network is replaced by one that
returns zeros of the right shape. Its images/s is therefore the most this host's CPU can feed to any
accelerator, which decides how many cores a GPU host needs.

It is ``resnet-serve serve`` itself, settings from the ``RESNET_SERVE_*`` environment, replicas
(``WORKERS``) included; only the function that loads the runner is swapped, through the ``load``
hook of ``serve`` and ``serve_replicas``:

    RESNET_SERVE_PORT=8003 python -m benchmarks.servers.null_service
"""

from __future__ import annotations

import sys

import torch
from torch import nn

from app.edge.logs import configure_logging
from app.edge.replicas import serve_replicas
from app.edge.server import serve
from app.serving.builder import load_runner
from app.serving.runner import ModelRunner
from app.settings import Settings


class NullModel(nn.Module):
    """Logits of zeros for every image, without looking at the pixels.

    It has the features/head split of ``app.model.resnet.ResNet`` (the runner calls the two
    halves), with no features at all: the head answers zeros of the right shape.
    """

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return x.new_zeros(x.shape[0], 0)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return features.new_zeros(features.shape[0], self.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def load_null_runner(settings: Settings) -> ModelRunner:
    """The real runner for the configured bundle (so device and labels are real), model swapped.

    With one intra-op thread, as the runner has on CUDA (``app.serving.runner.intra_op_threads``):
    a model that does no arithmetic has nothing to share among threads, and with two on the CPU
    their OpenMP helpers spun after every batch, 50-75% of this server's CPU, a cost no GPU host
    pays. What remains is the ingress a GPU host pays.
    """
    runner = load_runner(settings.model_copy(update={"torch_threads": 1}))
    runner.model = NullModel(runner.bundle.manifest.num_classes)
    return runner


def main() -> int:
    settings = Settings()
    if settings.workers > 1:
        configure_logging(settings.log_format, settings.log_level)
        return serve_replicas(settings, load_null_runner)
    return serve(settings, load=load_null_runner)


if __name__ == "__main__":
    sys.exit(main())
