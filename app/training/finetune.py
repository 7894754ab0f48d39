"""Fine-tune a ResNet on an image folder and write a bundle from the best validation epoch.

Flow: scan and split the data -> starting weights (or a checkpoint to resume) -> new head ->
head-only epochs with the backbone frozen -> optional unfreeze at a lower backbone learning rate ->
checkpoint every epoch, early stopping on validation accuracy -> bundle + plots from the best epoch.
Training and validation use the preprocessing module's transforms, so the service preprocesses
exactly as training did.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from app.model.bundle import (
    MANIFEST_FILE,
    BundleManifest,
    Calibration,
    Provenance,
    save_bundle,
)
from app.model.devices import DTYPES, resolve_device
from app.model.preprocessing import PreprocessingSpec, eval_transform, train_transform
from app.model.resnet import ResNet, build_resnet
from app.training.calibration import CalibrationFit, fit_calibration
from app.training.checkpoint import TrainingCheckpoint
from app.training.config import FinetuneConfig
from app.training.data import ImageDataset, Sample, make_loader, scan_image_folder, stratified_split
from app.training.evaluate import EvalResult, evaluate_model
from app.training.optim import build_optimizer, head_lr, parameter_groups, warmup_cosine
from app.training.plots import (
    CONFUSION_FILE,
    CURVES_FILE,
    plot_confusion_matrix,
    plot_training_curves,
)
from app.training.recipe import apply_recipe
from app.training.runtime import Precision, seed_everything
from app.training.scores import ClassificationReport
from app.training.trainer import Trainer
from app.training.weights import StartingWeights, load_backbone, resolve_starting_weights

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FinetuneResult:
    """What a run produced; ``report`` is the best epoch's weights scored on the validation set."""

    bundle_dir: Path
    checkpoint: Path
    best_epoch: int
    best_accuracy: float
    epochs_run: int
    history: list[dict[str, float]]
    report: ClassificationReport
    calibration: CalibrationFit
    seconds: float


@dataclass(frozen=True)
class _Splits:
    classes: list[str]
    train: list[Sample]
    val: list[Sample]


def _load_splits(config: FinetuneConfig) -> _Splits:
    train = scan_image_folder(config.data)
    if config.val is None:
        train_samples, val_samples = stratified_split(
            train.samples, config.val_fraction, config.seed
        )
    else:
        train_samples = list(train.samples)
        val_samples = list(scan_image_folder(config.val, classes=train.classes).samples)
    logger.info(
        "data: %d classes, %d training and %d validation images",
        len(train.classes),
        len(train_samples),
        len(val_samples),
    )
    unknown = sorted(set(config.abstain_labels) - set(train.classes))
    if unknown:
        raise ValueError(
            f"abstain labels {', '.join(unknown)} are not classes of {config.data} "
            f"({', '.join(train.classes)})"
        )
    if set(config.abstain_labels) >= set(train.classes):
        raise ValueError("abstain labels must leave at least one class that answers")
    return _Splits(list(train.classes), train_samples, val_samples)


def _new_state(
    config: FinetuneConfig, weights: StartingWeights, model: ResNet, classes: list[str]
) -> TrainingCheckpoint:
    """Load the starting weights into ``model`` and describe the fresh run."""
    if weights.state is not None:
        load_backbone(model, weights.state, f"{weights.description} (as a {config.arch} backbone)")
    spec = config.preprocessing(weights.mean, weights.std, weights.interpolation)
    logger.info("starting weights: %s", weights.description)
    return TrainingCheckpoint(
        epoch=0,
        arch=config.arch,
        classes=classes,
        pretrained=weights.description,
        backbone_pretrained=weights.pretrained,
        preprocessing=spec.model_dump(mode="json"),
        settings=config.recorded_settings(),
    )


def _cpu_copy(model: ResNet) -> dict[str, torch.Tensor]:
    return {name: t.detach().to("cpu", copy=True) for name, t in model.state_dict().items()}


def _is_better(result: EvalResult, state: TrainingCheckpoint) -> bool:
    """Higher validation accuracy wins; on a tie (common on small sets) the lower loss does."""
    accuracy = result.report.accuracy
    return accuracy > state.best_accuracy or (
        accuracy == state.best_accuracy and result.loss < state.best_loss
    )


def _check_out(out: Path, force: bool) -> None:
    """Refuse, before any training, to overwrite what --out holds unless it is a bundle and --force
    says so: a fine-tune must never silently replace a served model, nor delete a user's files."""
    if not out.exists():
        return
    if not out.is_dir():
        raise ValueError(f"{out}: exists and is not a folder; --out must name a bundle folder")
    if (out / MANIFEST_FILE).is_file():
        if not force:
            raise ValueError(f"{out}: holds a bundle already; pass --force to replace it")
    elif any(out.iterdir()):
        raise ValueError(f"{out}: is a folder with other files, not a bundle; choose another --out")


def _resumable(config: FinetuneConfig) -> tuple[TrainingCheckpoint, FinetuneConfig]:
    """The checkpoint to resume and the run's options, the unset ones as the run recorded them;
    refused with one line if the run is over or the options disagree.

    ``--epochs`` is the run's total: resuming continues after the checkpoint's epoch up to it.
    """
    path = config.resume
    state = TrainingCheckpoint.load(path)
    spec = state.preprocessing
    config = config.with_recorded(state.settings)
    if state.epoch >= config.epochs:
        raise ValueError(
            f"{path}: this run already finished its {state.epoch} epochs; --epochs is the total, "
            f"so pass more than {state.epoch} to train further"
        )
    if config.patience and state.stale_epochs >= config.patience:
        raise ValueError(
            f"{path}: this run stopped early after epoch {state.epoch} (no improvement for "
            f"{state.stale_epochs} epochs); raise --patience to train further"
        )
    asked = {"--input-size": config.input_size, "--resize-size": config.resize_size}
    held = {"--input-size": spec["input_size"], "--resize-size": spec["resize_size"]}
    for option, value in asked.items():
        if value is not None and value != held[option]:
            raise ValueError(
                f"{path}: {option} {value} contradicts the checkpoint's {held[option]}; "
                "resume with the run's own options"
            )
    if config.pretrained != state.pretrained:
        raise ValueError(
            f"{path}: --pretrained {config.pretrained} contradicts the checkpoint's "
            f"{state.pretrained}; resume with the run's own options"
        )
    return state, config


def finetune(config: FinetuneConfig) -> FinetuneResult:
    """Run the whole fine-tune described by ``config``; see the module docstring for the flow."""
    started = time.monotonic()
    _check_out(config.out, config.force)
    resumed = None
    if config.resume is not None:
        resumed, config = _resumable(config)
    device = resolve_device(config.device)
    precision = Precision.for_device(device)
    seed_everything(config.seed)
    splits = _load_splits(config)
    # From scratch, zero-initialised residual branches make every block start as the identity.
    model = build_resnet(config.arch, len(splits.classes), zero_init_residual=True)
    if resumed is None:
        weights = resolve_starting_weights(config.pretrained, config.arch)
        config = apply_recipe(config, weights.pretrained, weights.trained_at, len(splits.train))
        state = _new_state(config, weights, model, splits.classes)
    else:
        state = resumed
        state.check_compatible(config.resume, config.arch, splits.classes)
        model.load_state_dict(state.model)
        logger.info("resuming %s after epoch %d", config.resume, state.epoch)
    spec = PreprocessingSpec.model_validate(state.preprocessing)
    model.to(device, memory_format=torch.channels_last)

    train_loader = make_loader(
        # Decoded at the draft scale, as serving and validation decode: the same pixels, and on
        # small input sizes most of the decode time saved.
        ImageDataset(splits.train, train_transform(spec), draft_size=spec.resize_size),
        batch_size=config.batch_size,
        workers=config.workers,
        device=device,
        shuffle=True,
        generator=torch.Generator(),
    )
    val_loader = make_loader(
        ImageDataset(splits.val, eval_transform(spec), draft_size=spec.resize_size),
        batch_size=config.batch_size,
        workers=config.workers,
        device=device,
    )
    steps = len(train_loader)
    lr, weight_decay = config.optimizer_settings()
    # Without pretrained features there is nothing to protect: everything trains at full rate.
    scale = config.backbone_lr_scale if state.backbone_pretrained else 1.0
    optimizer = build_optimizer(config.optimizer, parameter_groups(model, lr, weight_decay, scale))
    scheduler = warmup_cosine(optimizer, round(config.warmup_epochs * steps), config.epochs * steps)
    trainer = Trainer(
        model, optimizer, scheduler, precision, config.label_smoothing, config.progress
    )
    if config.resume is not None:
        trainer.load_state_dict(state.trainer)
    logger.info("device: %s, mixed precision: %s", device, precision.describe())

    first_epoch, loop_started = state.epoch + 1, time.monotonic()
    for epoch in range(first_epoch, config.epochs + 1):
        if config.patience and state.stale_epochs >= config.patience:
            logger.info(
                "early stopping: validation accuracy has not improved for %d epochs",
                state.stale_epochs,
            )
            break
        _run_epoch(config, epoch, state, trainer, train_loader, val_loader)
        per_epoch = (time.monotonic() - loop_started) / (epoch - first_epoch + 1)
        if epoch < config.epochs:
            logger.info(
                "run: %s so far, about %s to go for %d more epochs (less if it stops early)",
                format_duration(time.monotonic() - started),
                format_duration(per_epoch * (config.epochs - epoch)),
                config.epochs - epoch,
            )

    model.load_state_dict(state.best_model)
    final = evaluate_model(model, val_loader, splits.classes, precision)
    # Temperature and abstain threshold from the best weights' validation logits; the same images
    # chose the epoch, which biases the threshold slightly: `resnet-serve calibrate` refits on others.
    fit = fit_calibration(final.logits, final.targets, _validation_name(config))
    logger.info(
        "calibration: temperature %.3f, ECE %.4f before and %.4f after, abstain below %.3f",
        fit.calibration.temperature,
        fit.ece_before,
        fit.ece_after,
        fit.calibration.abstain_threshold,
    )
    bundle_dir = _write_bundle(config, model, state, spec, splits, fit.calibration)
    title = f"{config.arch} on {config.data} (starting weights: {state.pretrained})"
    plot_training_curves(state.history, state.best_epoch, title, bundle_dir / CURVES_FILE)
    plot_confusion_matrix(final.report, title, bundle_dir / CONFUSION_FILE)
    logger.info("wrote bundle %s", bundle_dir)
    return FinetuneResult(
        bundle_dir=bundle_dir,
        checkpoint=config.checkpoint_path,
        best_epoch=state.best_epoch,
        best_accuracy=state.best_accuracy,
        epochs_run=state.epoch,
        history=state.history,
        report=final.report,
        calibration=fit,
        seconds=time.monotonic() - started,
    )


def _run_epoch(
    config: FinetuneConfig,
    epoch: int,
    state: TrainingCheckpoint,
    trainer: Trainer,
    train_loader: DataLoader[tuple[torch.Tensor, int]],
    val_loader: DataLoader[tuple[torch.Tensor, int]],
) -> None:
    """Train and validate one epoch, update the best-so-far and the history, save the checkpoint."""
    # Seeding per epoch makes the shuffle (and in-process augmentation) depend only on (seed,
    # epoch), so a resumed run sees the batches an uninterrupted one would have seen.
    torch.manual_seed(config.seed + epoch)
    if train_loader.generator is not None:
        train_loader.generator.manual_seed(config.seed + epoch)
    frozen = state.backbone_pretrained and (epoch <= config.freeze_epochs or not config.unfreeze)
    unfreezes_now = config.freeze_epochs > 0 and epoch == config.freeze_epochs + 1
    if state.backbone_pretrained and config.unfreeze and unfreezes_now:
        logger.info(
            "unfreezing the backbone at %g x the head's learning rate", config.backbone_lr_scale
        )
    trained = trainer.train_epoch(train_loader, f"epoch {epoch}/{config.epochs}", frozen)
    result = evaluate_model(trainer.model, val_loader, state.classes, trainer.precision)
    improved = _is_better(result, state)
    if improved:
        state.best_epoch, state.best_accuracy, state.best_loss = (
            epoch,
            result.report.accuracy,
            result.loss,
        )
        state.best_model = _cpu_copy(trainer.model)
        state.stale_epochs = 0
    else:
        state.stale_epochs += 1
    lr = head_lr(trainer.optimizer)
    state.history.append(
        {
            "epoch": epoch,
            "train_loss": trained.loss,
            "train_acc": trained.accuracy,
            "val_loss": result.loss,
            "val_acc": result.report.accuracy,
            "lr": lr,
            "images_per_s": trained.images_per_second,
        }
    )
    logger.info(
        "epoch %d/%d: train loss %.4f acc %.2f%% | val loss %.4f acc %.2f%% | lr %.2e | "
        "%.1f img/s, %.0f s%s%s",
        epoch,
        config.epochs,
        trained.loss,
        100 * trained.accuracy,
        result.loss,
        100 * result.report.accuracy,
        lr,
        trained.images_per_second,
        trained.seconds,
        " | backbone frozen" if frozen else "",
        " | best" if improved else "",
    )
    state.epoch = epoch
    state.model = trainer.model.state_dict()
    state.trainer = trainer.state_dict()
    state.save(config.checkpoint_path)


def format_duration(seconds: float) -> str:
    """``4m05s`` (or ``12s``): the scale people read a training run's time in."""
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest:02d}s" if minutes else f"{rest}s"


def _validation_name(config: FinetuneConfig) -> str:
    if config.val is not None:
        return str(config.val)
    return f"{config.val_fraction:g} stratified split of the dataset (seed {config.seed})"


def _write_bundle(
    config: FinetuneConfig,
    model: ResNet,
    state: TrainingCheckpoint,
    spec: PreprocessingSpec,
    splits: _Splits,
    calibration: Calibration,
) -> Path:
    """Save ``model`` (holding the best epoch's weights) with honest provenance."""
    best = next(h for h in state.history if h["epoch"] == state.best_epoch)
    validation = _validation_name(config)
    provenance = Provenance(
        pretrained=state.pretrained,
        dataset=str(config.data),
        epochs=state.epoch,
        metrics={
            "val_accuracy": state.best_accuracy,
            "val_loss": state.best_loss,
            "train_accuracy": best["train_acc"],
            "train_loss": best["train_loss"],
        },
        created_at=datetime.now(UTC),
        best_epoch=state.best_epoch,
        validation=validation,
        train_images=len(splits.train),
        val_images=len(splits.val),
        hyperparameters=config.hyperparameters(state.backbone_pretrained),
    )
    manifest = BundleManifest(
        name=config.bundle_name,
        arch=config.arch,
        num_classes=len(splits.classes),
        labels=splits.classes,
        preprocessing=spec,
        provenance=provenance,
        calibration=calibration,
        abstain_labels=sorted(set(config.abstain_labels)),
    )
    return save_bundle(config.out, model, manifest, DTYPES[config.weights_dtype])
