"""Defaults that adapt to where the weights start: what a run uses for every knob left unset.

From random initialisation a ResNet has everything to learn, so the recipe trades resolution for
steps: small images (64 px, which still shows a drawn shape or a texture clearly) let it take many
more of them in the same minutes, with a larger batch and learning rate. Both recipes aim at a
number of optimiser steps rather than of epochs, so a small dataset is seen more often and a
large one is not trained for hours. From pretrained weights the
features exist already: the run keeps the input size the weights were trained at (their features are
tuned to that scale) and needs only a few epochs, a short head-only phase and then the unfrozen
backbone at a lower rate. ``docs/finetuning.md`` has the measurements behind these numbers.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass

from app.training.config import FinetuneConfig

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recipe:
    """Values for the options a user left unset; pretrained weights bring their own sizes."""

    name: str
    steps: int  # optimiser steps to aim for; epochs follow from the data's size, within bounds
    min_epochs: int
    max_epochs: int
    batch_size: int
    adamw_lr: float
    input_size: int = 224
    resize_size: int = 256

    def epochs_for(self, train_images: int, batch_size: int) -> int:
        """Enough epochs for about ``steps`` optimiser steps: a small dataset is seen more often."""
        steps_per_epoch = max(1, math.ceil(train_images / batch_size))
        wanted = math.ceil(self.steps / steps_per_epoch)
        return min(self.max_epochs, max(self.min_epochs, wanted))


FROM_SCRATCH = Recipe(
    name="from scratch",
    steps=400,
    min_epochs=10,
    max_epochs=60,
    batch_size=64,
    adamw_lr=2e-3,
    input_size=64,
    resize_size=64,
)
FROM_PRETRAINED = Recipe(
    name="from pretrained weights",
    steps=150,
    min_epochs=5,
    max_epochs=30,
    batch_size=32,
    adamw_lr=1e-3,
)


def apply_recipe(
    config: FinetuneConfig,
    pretrained: bool,
    trained_at: tuple[int, int] | None,
    train_images: int,
) -> FinetuneConfig:
    """``config`` with every unset knob filled from the recipe for ``pretrained`` weights.

    ``trained_at`` is the (input, resize) size the starting weights were trained at, None for a
    random start; ``train_images`` sizes the epochs. Options the user gave are kept as they are; so is the learning rate of an
    optimizer other than AdamW, whose defaults live with the optimizer.
    """
    recipe = FROM_PRETRAINED if pretrained else FROM_SCRATCH
    sizes = (recipe.input_size, recipe.resize_size) if trained_at is None else trained_at
    input_size = config.input_size or sizes[0]
    resize_size = config.resize_size
    if resize_size is None and config.input_size is None:
        resize_size = sizes[1]
    batch_size = config.batch_size or recipe.batch_size
    filled = dataclasses.replace(
        config,
        epochs=config.epochs or recipe.epochs_for(train_images, batch_size),
        batch_size=batch_size,
        lr=config.lr or (recipe.adamw_lr if config.optimizer == "adamw" else None),
        input_size=input_size,
        resize_size=resize_size,
    )
    logger.info(
        "recipe %s: %d px, up to %d epochs, batch %d, lr %g (options given on the command line win)",
        recipe.name,
        filled.input_size,
        filled.epochs,
        filled.batch_size,
        filled.optimizer_settings()[0],
    )
    return filled
