"""LitServe with batching: the off-the-shelf batching server, on the same model and preprocessing.

Batches of up to 16 images, waiting at most 10 ms for one to fill, one inference worker on the
device. LitServe hands each request from its HTTP process to the worker process through a queue
and runs ``decode_request`` there, so decoding and the forward pass share the worker.

LitServe reads a request body as a form or as JSON, so this peer takes multipart uploads (field
``file``) only; a raw ``image/*`` body is answered with an error by LitServe itself.

    python -m benchmarks.peers.litserve_peer --port 8002 --model-dir models/demo --threads 2
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import litserve
import torch

from benchmarks.classifier import Classifier
from benchmarks.peers.options import peer_options

MAX_BATCH_SIZE = 16
BATCH_TIMEOUT_S = 0.010


class ResNetAPI(litserve.LitAPI):
    """The LitServe hooks: decode one upload, stack, forward, split, encode top-5."""

    def __init__(self, model_dir: Path, threads: int) -> None:
        super().__init__(max_batch_size=MAX_BATCH_SIZE, batch_timeout=BATCH_TIMEOUT_S)
        self.model_dir = model_dir
        self.threads = threads

    def setup(self, device: str) -> None:
        self.classifier = Classifier(self.model_dir, device, self.threads)
        asyncio.run(self.classifier.warm_up())

    def decode_request(self, request) -> torch.Tensor:  # a form: LitServe passes request.form()
        return self.classifier.prepare(request["file"].file.read())

    def batch(self, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        return inputs  # the runner stacks them itself

    def predict(self, x: list[torch.Tensor]) -> list[torch.Tensor]:
        return self.classifier.predict(x)

    def unbatch(self, output: list[torch.Tensor]) -> list[torch.Tensor]:
        return output

    def encode_response(self, output: torch.Tensor) -> dict:
        return {"predictions": self.classifier.top_k(output)}


def main() -> None:
    args = peer_options(__doc__).parse_args()
    server = litserve.LitServer(
        ResNetAPI(args.model_dir, args.threads),
        accelerator=args.device,
        devices=1,
        workers_per_device=1,
    )
    server.run(host=args.host, port=args.port, log_level="warning", generate_client_file=False)


if __name__ == "__main__":
    main()
