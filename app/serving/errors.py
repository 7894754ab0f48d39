"""Why a request cannot be served, as the service and the explainer raise it (no HTTP here).

Each maps to one HTTP answer in ``app.edge.routes.inference``. They live apart from the service so
that the modules it uses (the explainer) can raise them too.
"""

from __future__ import annotations


class NotReadyError(Exception):
    """The model is not loaded and warm yet, or it failed to; the message says which."""


class DrainingError(NotReadyError):
    """The server is shutting down: new work is refused while admitted work finishes."""


class InvalidInputError(ValueError):
    """A request's tensors do not fit the model (a 400, not a server fault)."""


class InvalidParameterError(InvalidInputError):
    """A request parameter is out of range for this model (422, like FastAPI's own checks)."""


class TooManyImagesError(InvalidInputError):
    """A request holds more images than one may (413 over HTTP), counted before any is read."""

    def __init__(self, count: str, limit: int) -> None:
        super().__init__(f"{count} images in one request; the limit is {limit}")
        self.count = count
        self.limit = limit


class ModelNotFoundError(LookupError):
    """A request names a model, or a version, that this server does not serve (404)."""
