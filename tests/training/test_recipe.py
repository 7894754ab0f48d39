"""The recipe fills what the user left unset, by where the weights start; given options win."""

from __future__ import annotations

from pathlib import Path

from app.training.config import FinetuneConfig
from app.training.recipe import FROM_PRETRAINED, FROM_SCRATCH, apply_recipe

DATA, OUT = Path("data"), Path("out")


def test_from_scratch_trains_small_images_for_more_epochs() -> None:
    config = apply_recipe(
        FinetuneConfig(data=DATA, out=OUT), pretrained=False, trained_at=None, train_images=960
    )
    assert (config.input_size, config.resize_size) == (64, 64)
    # 960 images are 15 steps of 64: 27 epochs for the recipe's 400 steps.
    assert (config.epochs, config.batch_size, config.lr) == (27, 64, 2e-3)
    assert config.patience == 9  # a third of the epochs


def test_from_pretrained_keeps_the_size_the_weights_were_trained_at() -> None:
    config = apply_recipe(
        FinetuneConfig(data=DATA, out=OUT), pretrained=True, trained_at=(112, 128), train_images=96
    )
    assert (config.input_size, config.resize_size) == (112, 128)
    # 96 images are 4 steps of 24 (a smaller batch, so an epoch is several steps): 38 epochs.
    assert (config.epochs, config.batch_size, config.lr) == (38, 24, 3e-3)
    assert (config.freeze_epochs, config.patience) == (8, 13)


def test_options_given_win_over_the_recipe() -> None:
    given = FinetuneConfig(
        data=DATA, out=OUT, input_size=96, epochs=3, batch_size=8, lr=5e-4, patience=0
    )
    config = apply_recipe(given, pretrained=False, trained_at=None, train_images=960)
    # Only the input size was given: the resize keeps the usual ratio to it, not the recipe's 64.
    assert (config.input_size, config.resize_size) == (96, None)
    assert config.preprocessing((0, 0, 0), (1, 1, 1), "bilinear").resize_size == 110
    assert (config.epochs, config.batch_size, config.lr, config.patience) == (3, 8, 5e-4, 0)


def test_sgd_keeps_its_own_default_learning_rate() -> None:
    given = FinetuneConfig(data=DATA, out=OUT, optimizer="sgd")
    config = apply_recipe(given, pretrained=False, trained_at=None, train_images=960)
    assert config.optimizer_settings()[0] == 0.05


def test_epochs_aim_at_a_number_of_steps_within_bounds() -> None:
    assert FROM_SCRATCH.epochs_for(train_images=1920, batch_size=64) == 14  # 30 steps an epoch
    assert FROM_SCRATCH.epochs_for(train_images=100_000, batch_size=64) == 10  # the minimum
    assert FROM_SCRATCH.epochs_for(train_images=10, batch_size=8) == 60  # the maximum


def test_a_few_dozen_images_get_smaller_batches_but_never_below_eight() -> None:
    assert FROM_PRETRAINED.batch_size_for(1000) == 32
    assert FROM_PRETRAINED.batch_size_for(48) == 12
    assert FROM_PRETRAINED.batch_size_for(12) == 8


def test_a_resize_alone_smaller_than_the_recipes_crop_sets_the_crop_too() -> None:
    given = FinetuneConfig(data=DATA, out=OUT, resize_size=48)
    config = apply_recipe(given, pretrained=False, trained_at=None, train_images=960)
    assert (config.input_size, config.resize_size) == (48, 48)
    config = apply_recipe(
        FinetuneConfig(data=DATA, out=OUT, resize_size=96), True, (64, 64), train_images=960
    )
    assert (config.input_size, config.resize_size) == (64, 96)


def test_a_resumed_run_keeps_its_recorded_settings_when_given_more_epochs() -> None:
    started = apply_recipe(
        FinetuneConfig(data=DATA, out=OUT), pretrained=True, trained_at=(112, 112), train_images=96
    )
    recorded = started.recorded_settings()
    resumed = FinetuneConfig(data=DATA, out=OUT, epochs=80).with_recorded(recorded)
    assert resumed.epochs == 80
    assert (resumed.freeze_epochs, resumed.patience, resumed.batch_size, resumed.lr) == (
        started.freeze_epochs,
        started.patience,
        started.batch_size,
        started.lr,
    )
