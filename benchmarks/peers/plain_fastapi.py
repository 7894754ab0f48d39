"""The peer a user writes first: FastAPI, the model loaded in the lifespan, inference inline per request.

No batching and no thread pools: each request is decoded, preprocessed and classified inside its
``async def`` handler, so requests run strictly one at a time on the event loop. Same bundle, same
preprocessing and same forward pass as the service (``benchmarks.classifier``).

    python -m benchmarks.peers.plain_fastapi --port 8001 --model-dir models/demo --threads 2
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI, HTTPException, Request, UploadFile

from app.model.preprocessing import ImageDecodeError, ImageTooLargeError
from benchmarks.classifier import Classifier
from benchmarks.peers.options import peer_options


def create_app(options: dict) -> FastAPI:
    """The app; ``options`` are the ``Classifier`` arguments, used when the lifespan starts."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        classifier = Classifier(**options)
        await classifier.warm_up()
        app.state.classifier = classifier
        yield

    app = FastAPI(lifespan=lifespan)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/predict")
    async def predict(request: Request, file: UploadFile | None = None) -> dict:
        """Classify a multipart ``file`` part, or a raw ``image/*`` body."""
        if file is not None:
            data = await file.read()
        elif request.headers.get("content-type", "").startswith("image/"):
            data = await request.body()
        else:
            raise HTTPException(400, "send a multipart 'file' part or an image/* body")
        classifier: Classifier = request.app.state.classifier
        try:
            tensor = classifier.prepare(data)
        except (ImageDecodeError, ImageTooLargeError) as exc:
            raise HTTPException(400, str(exc)) from exc
        (probabilities,) = classifier.predict([tensor])
        return {"predictions": classifier.top_k(probabilities)}

    return app


def main() -> None:
    args = peer_options(__doc__).parse_args()
    options = {"model_dir": args.model_dir, "device": args.device, "threads": args.threads}
    uvicorn.run(
        create_app(options), host=args.host, port=args.port, log_level="warning", access_log=False
    )


if __name__ == "__main__":
    main()
