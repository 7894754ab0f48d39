"""Defaults that adapt to what the user has: the values a run uses for every knob left unset.

From random initialisation a ResNet has everything to learn, so the recipe trades resolution for
steps: small images (64 px, which still shows a drawn shape or a texture clearly) let it take many
more of them in the same minutes. From pretrained weights the features exist already: the run keeps
the input size the weights were trained at (their features are tuned to that scale), trains the new
head alone for the first fifth of the run, then the whole network with the backbone at a tenth of
the head's rate.

Both recipes aim at a number of optimiser steps rather than of epochs, so a small dataset is seen
more often and a large one is not trained for hours; a dataset of a few dozen images gets smaller
batches so that an epoch is still several steps. Patience grows with the epochs, because on a tiny
validation split accuracy moves in coarse jumps. ``docs/finetuning.md`` has the measurements behind
these numbers.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass

from app.training.config import FinetuneConfig

logger = logging.getLogger(__name__)

MIN_STEPS_PER_EPOCH = 4  # below this, the batch shrinks (to no less than MIN_BATCH_SIZE)
MIN_BATCH_SIZE = 8


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

    def batch_size_for(self, train_images: int) -> int:
        fitting = train_images // MIN_STEPS_PER_EPOCH
        return max(MIN_BATCH_SIZE, min(self.batch_size, fitting))

    def epochs_for(self, train_images: int, batch_size: int) -> int:
        """Enough epochs for about ``steps`` optimiser steps (a ragged last batch is dropped)."""
        steps_per_epoch = max(1, train_images // batch_size)
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
    max_epochs=60,
    batch_size=32,
    adamw_lr=3e-3,
)


def apply_recipe(
    config: FinetuneConfig,
    pretrained: bool,
    trained_at: tuple[int, int] | None,
    train_images: int,
) -> FinetuneConfig:
    """``config`` with every unset knob filled from the recipe for ``pretrained`` weights.

    ``trained_at`` is the (input, resize) size the starting weights were trained at, None for a
    random start; ``train_images`` sizes the batches and epochs. Options the user gave are kept as
    they are; so is the learning rate of an optimizer other than AdamW, whose defaults live with
    the optimizer.
    """
    recipe = FROM_PRETRAINED if pretrained else FROM_SCRATCH
    sizes = (recipe.input_size, recipe.resize_size) if trained_at is None else trained_at
    input_size, resize_size = config.input_size, config.resize_size
    if input_size is None and resize_size is None:
        input_size, resize_size = sizes
    elif input_size is None:
        input_size = min(sizes[0], resize_size)  # a given resize smaller than the recipe's crop
    batch_size = config.batch_size or recipe.batch_size_for(train_images)
    epochs = config.epochs or recipe.epochs_for(train_images, batch_size)
    filled = dataclasses.replace(
        config,
        input_size=input_size,
        resize_size=resize_size,
        batch_size=batch_size,
        epochs=epochs,
        freeze_epochs=_given(config.freeze_epochs, max(1, round(epochs / 5))),
        patience=_given(config.patience, max(5, math.ceil(epochs / 3))),
        lr=config.lr or (recipe.adamw_lr if config.optimizer == "adamw" else None),
    )
    logger.info(
        "recipe %s: %d px, up to %d epochs%s, batch %d, lr %g, patience %d "
        "(options given on the command line win)",
        recipe.name,
        filled.input_size,
        filled.epochs,
        _frozen_note(filled) if pretrained else "",
        filled.batch_size,
        filled.optimizer_settings()[0],
        filled.patience,
    )
    return filled


def _given(value: int | None, derived: int) -> int:
    """The user's value, 0 included (it means "off" for patience and freezing), else the derived."""
    return derived if value is None else value


def _frozen_note(config: FinetuneConfig) -> str:
    frozen = config.freeze_epochs if config.unfreeze else "all"
    return f" ({frozen} with the backbone frozen)"
