"""Fine-tuning: dataset checks, starting weights, checkpoints and resume, the bundle it writes."""

from __future__ import annotations

import json
import logging
import re
import urllib.error
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torchvision
from safetensors import safe_open

from app.cli.main import main
from app.model.bundle import BundleError, BundleManifest, load_bundle, save_bundle
from app.model.preprocessing import PreprocessingSpec
from app.model.resnet import build_resnet
from app.training.checkpoint import TrainingCheckpoint
from app.training.config import FinetuneConfig
from app.training.data import DatasetError, scan_image_folder, stratified_split
from app.training.evaluate import evaluate_bundle
from app.training.finetune import finetune
from tests.conftest import write_bundle

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ConfigFactory = Callable[..., FinetuneConfig]
ImageFolderWriter = Callable[..., Path]


# ---- datasets ----------------------------------------------------------------------------------


def test_unreadable_images_are_skipped_with_one_warning(
    tiny_data: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tiny_data / "circle" / "broken.jpg").write_bytes(b"not an image at all")
    good = (tiny_data / "stripes" / "stripes_0.png").read_bytes()
    (tiny_data / "stripes" / "truncated.png").write_bytes(good[: len(good) // 2])
    with caplog.at_level(logging.WARNING, logger="app"):
        folder = scan_image_folder(tiny_data)
    assert len(folder.samples) == 24
    assert sorted(p.name for p, _ in folder.skipped) == ["broken.jpg", "truncated.png"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "skipped 2 unreadable image(s)" in warnings[0]
    assert "circle/broken.jpg" in warnings[0] and "stripes/truncated.png" in warnings[0]


def test_classes_are_sorted_folder_names_and_other_files_ignored(tiny_data: Path) -> None:
    (tiny_data / "circle" / "notes.txt").write_text("not a picture")
    (tiny_data / ".cache").mkdir()
    folder = scan_image_folder(tiny_data)
    assert folder.classes == ("checkerboard", "circle", "stripes")
    assert Counter(label for _, label in folder.samples) == {0: 8, 1: 8, 2: 8}
    assert folder.skipped == ()


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ({}, "no class folders"),
        ({"circle": 3}, "only one class (circle)"),
        ({"circle": 3, "stripes": 0}, "['stripes'] contain no readable images"),
    ],
)
def test_unusable_dataset_is_a_clear_error(
    tmp_path: Path, write_images: ImageFolderWriter, layout: dict[str, int], message: str
) -> None:
    root = write_images(tmp_path / "data", layout)
    with pytest.raises(DatasetError, match=re.escape(message)):
        scan_image_folder(root)


def test_missing_dataset_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="dataset folder does not exist"):
        scan_image_folder(tmp_path / "nowhere")


def test_validation_classes_must_be_training_classes(
    tmp_path: Path, write_images: ImageFolderWriter
) -> None:
    val = write_images(tmp_path / "val", {"circle": 2, "ring": 2})
    with pytest.raises(DatasetError, match=r"\['ring'\] are not among"):
        scan_image_folder(val, classes=["circle", "stripes", "checkerboard"])


def test_stratified_split_is_seeded_and_keeps_every_class(tiny_data: Path) -> None:
    samples = scan_image_folder(tiny_data).samples
    train, val = stratified_split(samples, 0.25, seed=3)
    assert (train, val) == stratified_split(samples, 0.25, seed=3)
    assert stratified_split(samples, 0.25, seed=4)[1] != val
    assert sorted(label for _, label in val) == [0, 0, 1, 1, 2, 2]
    assert set(train).isdisjoint(val) and len(train) + len(val) == len(samples)


# ---- fine-tuning -------------------------------------------------------------------------------


def test_one_epoch_finetune_via_cli_writes_loadable_bundle_and_plots(
    tiny_data: Path,
    tmp_path: Path,
    write_images: ImageFolderWriter,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "models" / "tiny"
    val = write_images(tmp_path / "val", {"circle": 3, "stripes": 3}, seed=5)  # a subset is fine
    argv = [
        "finetune",
        str(tiny_data),
        "--val",
        str(val),
        "--out",
        str(out),
        "--checkpoint-dir",
        str(tmp_path / "ckpt"),
    ]
    argv += [
        "--input-size",
        "32",
        "--resize-size",
        "32",
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--workers",
        "0",
        "--device",
        "cpu",
        "--no-progress",
        "--weights-dtype",
        "fp16",
        "--abstain-labels",
        "stripes",
    ]
    assert main(argv) == 0
    printed = capsys.readouterr()
    assert re.search(r"best validation accuracy: \d+\.\d\d% \(epoch 1 of 1\)", printed.out)
    assert "confusion matrix" in printed.out
    assert "data: 3 classes, 24 training and 6 validation images" in printed.err
    assert re.search(r"epoch 1/1: train loss [\d.]+ acc .* img/s", printed.err)
    assert re.search(
        r"calibration on 6 images: temperature [\d.]+, ECE [\d.]+ before, [\d.]+ after",
        printed.out,
    )
    assert re.search(r"calibration: temperature [\d.]+, ECE [\d.]+ before", printed.err)
    summary = printed.out.strip().splitlines()[-1]
    assert re.fullmatch(
        rf"done in \d+s: bundle {re.escape(str(out))}, validation accuracy \d+\.\d\d%, "
        r"ECE \d\.\d{4} \(calibrated\)",
        summary,
    ), summary

    bundle = load_bundle(out)
    assert bundle.manifest.name == "tiny"
    assert bundle.manifest.labels == ["checkerboard", "circle", "stripes"]
    assert bundle.manifest.abstain_labels == ["stripes"]
    assert bundle.manifest.preprocessing.input_size == 32
    provenance = bundle.manifest.provenance
    assert (provenance.pretrained, provenance.dataset, provenance.epochs) == (
        "none",
        str(tiny_data),
        1,
    )
    assert 0.0 <= provenance.metrics["val_accuracy"] <= 1.0
    assert provenance.model_extra is not None
    assert provenance.model_extra["best_epoch"] == 1
    assert provenance.model_extra["validation"] == str(val)
    assert (provenance.model_extra["train_images"], provenance.model_extra["val_images"]) == (24, 6)
    calibration = bundle.manifest.calibration
    assert calibration is not None and calibration.fitted_on == str(val)
    assert calibration.temperature > 0 and 0 <= (calibration.abstain_threshold or 0) <= 1
    raw = json.loads((out / "model.json").read_text())
    assert raw["provenance"]["hyperparameters"]["optimizer"] == "adamw"
    with safe_open(out / "model.safetensors", "pt") as stored:  # --weights-dtype fp16
        assert stored.get_tensor("fc.weight").dtype == torch.float16
    for plot in ("training_curves.png", "confusion_matrix.png"):
        assert (out / plot).read_bytes().startswith(PNG_SIGNATURE)
    assert (tmp_path / "ckpt" / "checkpoint.pt").is_file()


def test_weights_dtype_takes_the_serving_names_and_refuses_torch_names(
    tiny_data: Path, tmp_path: Path
) -> None:
    assert FinetuneConfig(tiny_data, tmp_path / "out").weights_dtype == "fp32"
    with pytest.raises(ValueError, match="unknown weights dtype 'float16'; use fp16 or fp32"):
        FinetuneConfig(tiny_data, tmp_path / "out", weights_dtype="float16")  # type: ignore[arg-type]


def test_resume_continues_after_the_saved_epoch_and_matches_an_uninterrupted_run(
    tiny_data: Path, fast_config: ConfigFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    uninterrupted = finetune(fast_config(tiny_data, epochs=2, patience=0))

    # Crash while saving the epoch-2 checkpoint: the file on disk is the epoch-1 one.
    save = TrainingCheckpoint.save

    def save_once(self: TrainingCheckpoint, path: Path) -> None:
        if self.epoch > 1:
            raise KeyboardInterrupt
        save(self, path)

    crashed_dir = tmp_path / "crashed"
    monkeypatch.setattr(TrainingCheckpoint, "save", save_once)
    with pytest.raises(KeyboardInterrupt):
        finetune(fast_config(tiny_data, epochs=2, patience=0, checkpoint_dir=crashed_dir))
    monkeypatch.setattr(TrainingCheckpoint, "save", save)
    checkpoint = crashed_dir / "checkpoint.pt"
    assert TrainingCheckpoint.load(checkpoint).epoch == 1

    # No --checkpoint-dir: a resumed run keeps writing beside the checkpoint it resumed.
    resumed = finetune(
        fast_config(tiny_data, epochs=2, patience=0, resume=checkpoint, checkpoint_dir=None)
    )
    assert [h["epoch"] for h in resumed.history] == [1, 2]
    for ours, reference in zip(resumed.history, uninterrupted.history, strict=True):
        for key in ("train_loss", "train_acc", "val_loss", "val_acc", "lr"):
            assert ours[key] == pytest.approx(reference[key], rel=1e-4, abs=1e-6), key
    assert TrainingCheckpoint.load(checkpoint).epoch == 2


def test_resume_refuses_a_checkpoint_for_another_arch(
    tiny_data: Path, fast_config: ConfigFactory
) -> None:
    result = finetune(fast_config(tiny_data))
    with pytest.raises(ValueError, match="checkpoint is for resnet18, but --arch is resnet34"):
        finetune(fast_config(tiny_data, arch="resnet34", resume=result.checkpoint, epochs=2))


def test_resuming_a_finished_run_says_so_and_contradicting_options_are_refused(
    tiny_data: Path, fast_config: ConfigFactory
) -> None:
    checkpoint = finetune(fast_config(tiny_data)).checkpoint
    with pytest.raises(ValueError, match="already finished its 1 epochs; --epochs is the total"):
        finetune(fast_config(tiny_data, resume=checkpoint))
    with pytest.raises(ValueError, match="--input-size 48 contradicts the checkpoint's 32"):
        finetune(
            fast_config(tiny_data, resume=checkpoint, epochs=2, input_size=48, resize_size=None)
        )


def _torchvision_pth(folder: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    torch.manual_seed(1)
    state = torchvision.models.resnet18(weights=None).state_dict()
    torch.save(state, folder / "resnet18.pth")
    return folder / "resnet18.pth", state


def _resnet18_bundle(folder: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    torch.manual_seed(2)
    model = build_resnet("resnet18", num_classes=5)
    spec = PreprocessingSpec(
        input_size=32, resize_size=32, mean=(0.5, 0.5, 0.5), std=(0.2, 0.2, 0.2)
    )
    manifest = BundleManifest(
        name="source", arch="resnet18", num_classes=5, labels=list("abcde"), preprocessing=spec
    )
    save_bundle(folder / "source", model, manifest)
    return folder / "source", model.state_dict()


@pytest.mark.parametrize(
    ("make_source", "described_as"),
    [(_torchvision_pth, "torchvision checkpoint"), (_resnet18_bundle, "bundle")],
)
def test_pretrained_backbone_is_loaded_and_stays_frozen_while_the_head_trains(
    tiny_data: Path,
    fast_config: ConfigFactory,
    tmp_path: Path,
    make_source: Callable[[Path], tuple[Path, dict[str, torch.Tensor]]],
    described_as: str,
) -> None:
    source, original = make_source(tmp_path)
    result = finetune(fast_config(tiny_data, pretrained=str(source), freeze_epochs=1))

    bundle = load_bundle(result.bundle_dir)
    trained = bundle.model.state_dict()
    for name in ("conv1.weight", "layer3.1.conv2.weight", "layer4.0.bn1.running_var"):
        torch.testing.assert_close(trained[name], original[name], rtol=0, atol=0)
    assert trained["fc.weight"].shape == (3, 512)
    assert bundle.manifest.provenance.pretrained.startswith(described_as)
    if described_as == "bundle":  # a bundle's normalisation travels with its weights
        assert bundle.manifest.preprocessing.mean == (0.5, 0.5, 0.5)


def test_after_the_freeze_epochs_the_backbone_trains_at_the_scaled_rate(
    tiny_data: Path, fast_config: ConfigFactory, tmp_path: Path
) -> None:
    source, original = _resnet18_bundle(tmp_path)
    config = fast_config(
        tiny_data, pretrained=str(source), epochs=2, freeze_epochs=1, backbone_lr_scale=0.25
    )
    result = finetune(config)

    checkpoint = TrainingCheckpoint.load(result.checkpoint)
    groups = checkpoint.trainer["optimizer"]["param_groups"]
    lrs = {group["name"]: group["lr"] for group in groups}
    assert lrs["backbone"] == pytest.approx(0.25 * lrs["head"])
    assert not torch.equal(checkpoint.model["conv1.weight"], original["conv1.weight"])


def test_pretrained_bundle_of_another_arch_is_a_clear_error(
    tiny_data: Path, fast_config: ConfigFactory, tmp_path: Path
) -> None:
    source = tmp_path / "r34"
    model = build_resnet("resnet34", num_classes=2)
    spec = PreprocessingSpec(input_size=32, resize_size=32)
    manifest = BundleManifest(
        name="r34", arch="resnet34", num_classes=2, labels=["a", "b"], preprocessing=spec
    )
    save_bundle(source, model, manifest, weights_dtype=torch.float16)
    with pytest.raises(BundleError, match="the bundle is a resnet34, but --arch is resnet18"):
        finetune(fast_config(tiny_data, pretrained=str(source)))


def test_pth_of_another_arch_names_the_file(
    tiny_data: Path, fast_config: ConfigFactory, tmp_path: Path
) -> None:
    source = tmp_path / "r50.pth"
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), source)
    with pytest.raises(BundleError, match=re.escape(f"{source} (as a resnet18 backbone)")):
        finetune(fast_config(tiny_data, pretrained=str(source)))


def test_imagenet_weights_load_from_the_torch_hub_cache_with_no_network(
    tiny_data: Path,
    fast_config: ConfigFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``--pretrained imagenet`` goes through torchvision's weights API; a file in the hub cache
    under the weights' own file name is what it reads, as on a machine that downloaded it once."""
    weights = torchvision.models.ResNet18_Weights.DEFAULT
    cached = torchvision.models.resnet18(weights=None).state_dict()
    cache = tmp_path / "torch-home" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(cached, cache / Path(weights.url).name)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    # Frozen for the whole (one-epoch) run: the bundle's backbone is the cached one, untouched.
    result = finetune(fast_config(tiny_data, pretrained="imagenet", freeze_epochs=1))
    bundle = load_bundle(result.bundle_dir)
    assert bundle.manifest.provenance.pretrained == f"imagenet: torchvision {weights}"
    assert bundle.manifest.preprocessing.interpolation == "bilinear"
    assert torch.equal(bundle.model.state_dict()["conv1.weight"], cached["conv1.weight"])


def test_imagenet_download_failure_is_a_clear_error(
    tiny_data: Path, fast_config: ConfigFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr("torchvision.models._api.load_state_dict_from_url", offline)
    with pytest.raises(
        ValueError, match=r"could not fetch torchvision's ImageNet weights .*--pretrained PATH"
    ):
        finetune(fast_config(tiny_data, pretrained="imagenet"))


@pytest.mark.slow
def test_short_cpu_training_on_demo_shapes_clearly_beats_chance(
    tmp_path: Path, fast_config: ConfigFactory, write_images: ImageFolderWriter
) -> None:
    classes = ("circle", "cross", "stripes")
    train = write_images(tmp_path / "train", dict.fromkeys(classes, 150), seed=0)
    held_out = write_images(tmp_path / "held-out", dict.fromkeys(classes, 20), seed=99)
    # From scratch a ResNet-18 needs a few hundred steps before it learns shapes: 12 epochs of
    # 15 batches at 32 px take about 20 s on two cores.
    config = fast_config(train, epochs=12, batch_size=16, lr=2e-3, patience=0)
    result = finetune(config)
    evaluation = evaluate_bundle(result.bundle_dir, held_out, device="cpu", workers=0)
    # Chance is 33%; seeds 0-2 give 84-87% on validation and 80-90% on fresh images.
    assert result.best_accuracy >= 0.65
    assert evaluation.report.accuracy >= 0.65


# ---- CLI errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("layout", "extra_args", "message"),
    [
        ({}, [], "no class folders"),
        ({"circle": 2}, [], "only one class"),
        ({"circle": 2, "stripes": 2}, ["--pretrained", "missing.pth"], "no such file or folder"),
        ({"circle": 2, "stripes": 2}, ["--epochs", "0"], "epochs must be at least 1"),
        ({"circle": 2, "stripes": 2}, ["--device", "cuda:7"], "cuda"),
        (
            {"circle": 2, "stripes": 2},
            ["--abstain-labels", "clutter"],
            "abstain labels clutter are not classes of",
        ),
        (
            {"circle": 2, "stripes": 2},
            ["--abstain-labels", "circle,stripes"],
            "must leave at least one class that answers",
        ),
    ],
)
def test_cli_bad_input_exits_2_with_one_error_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    write_images: ImageFolderWriter,
    layout: dict[str, int],
    extra_args: list[str],
    message: str,
) -> None:
    data = write_images(tmp_path / "data", layout)
    argv = ["finetune", str(data), "--out", str(tmp_path / "out"), "--workers", "0", *extra_args]
    assert main(argv) == 2
    err_lines = capsys.readouterr().err.splitlines()
    errors = [line for line in err_lines if line.startswith("error: ")]
    assert errors == err_lines[-1:] and message in errors[0]
    assert not any("Traceback" in line for line in err_lines)
    assert not (tmp_path / "out").exists()


def test_cli_demo_data_writes_the_dataset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo-data", str(tmp_path / "demo"), "--seed", "1", "--per-class", "1"]) == 0
    assert "wrote 8 images of 8 classes" in capsys.readouterr().out
    assert len(scan_image_folder(tmp_path / "demo").samples) == 8


def test_cli_demo_data_rejects_zero_images(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo-data", str(tmp_path / "demo"), "--per-class", "0"]) == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_out_holding_a_bundle_is_refused_before_training_unless_forced(tmp_path: Path) -> None:
    existing = write_bundle(tmp_path / "served", ["a", "b"])
    before = (existing / "model.json").read_text()
    with pytest.raises(ValueError, match="holds a bundle already; pass --force to replace it"):
        finetune(FinetuneConfig(data=tmp_path / "no-data-needed", out=existing))
    assert (existing / "model.json").read_text() == before  # untouched
    with pytest.raises(ValueError, match="not a bundle; choose another --out"):
        (tmp_path / "mine").mkdir()
        (tmp_path / "mine" / "notes.txt").write_text("keep me")
        finetune(
            FinetuneConfig(data=tmp_path / "no-data-needed", out=tmp_path / "mine", force=True)
        )
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
