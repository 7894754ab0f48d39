"""The demo dataset is deterministic, well-formed, and keeps every shape where serving looks."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.cli.main import main
from app.training import demo_data
from app.training.demo_data import (
    CLASSES,
    MAX_ASPECT,
    MAX_SIDE,
    MIN_ASPECT,
    MIN_SIDE,
    NEW_CLASSES,
    generate_dataset,
    render_image,
)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.jpg"))}


def _plane_residual(pixels: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """|pixel - best plane| per channel, the plane fitted on the `keep` pixels.

    The background is a linear gradient plus mild noise, so away from the shape the residual is
    noise-sized; a shape contrasts by >= 60 luminance, hence >= 60 in some channel.
    """
    ys, xs = np.indices(keep.shape)
    design = np.stack([xs, ys, np.ones_like(xs)], axis=-1).astype(np.float64)
    coef, *_ = np.linalg.lstsq(design[keep], pixels[keep].astype(np.float64), rcond=None)
    return np.abs(pixels - design @ coef)


def test_same_seed_gives_byte_identical_files_and_another_seed_differs(tmp_path: Path) -> None:
    classes = ("circle", "stripes", "checkerboard")
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        generate_dataset(tmp_path / name, seed=seed, per_class=2, classes=classes)
    first, again, other = (_files(tmp_path / n) for n in "abc")
    assert first == again
    assert first.keys() == other.keys()
    assert all(first[k] != other[k] for k in first)


def test_image_does_not_depend_on_which_other_classes_are_generated(tmp_path: Path) -> None:
    generate_dataset(tmp_path / "all", seed=5, per_class=2)
    generate_dataset(tmp_path / "two", seed=5, per_class=2, classes=("star", "ring"))
    everything, subset = _files(tmp_path / "all"), _files(tmp_path / "two")
    assert subset == {k: everything[k] for k in subset}


def test_drawing_on_several_processes_writes_the_files_one_process_would(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    classes = ("pentagon", "heart")  # two of the classes the demo model never saw
    generate_dataset(tmp_path / "parallel", seed=2, per_class=50, classes=classes)
    monkeypatch.setattr(demo_data, "PARALLEL_FROM", 10_000)
    generate_dataset(tmp_path / "serial", seed=2, per_class=50, classes=classes)
    parallel = _files(tmp_path / "parallel")
    assert len(parallel) == 100
    assert parallel == _files(tmp_path / "serial")


def test_writes_one_folder_per_class_with_numbered_rgb_jpegs_of_varied_size(tmp_path: Path) -> None:
    counts = generate_dataset(tmp_path / "new" / "out", seed=0, per_class=4)

    assert counts == dict.fromkeys(CLASSES, 4)
    assert sorted(p.name for p in (tmp_path / "new" / "out").iterdir()) == sorted(CLASSES)
    sizes = []
    for name in CLASSES:
        paths = sorted((tmp_path / "new" / "out" / name).iterdir())
        assert [p.name for p in paths] == [f"{name}_{i:05d}.jpg" for i in range(4)]
        for path in paths:
            with Image.open(path) as image:
                assert (image.format, image.mode) == ("JPEG", "RGB")
                sizes.append(image.size)
    assert all(MIN_SIDE <= w <= MAX_SIDE and MIN_SIDE <= h <= MAX_SIDE for w, h in sizes)
    assert all(MIN_ASPECT <= w / h <= MAX_ASPECT for w, h in sizes)
    assert any(w != h for w, h in sizes)
    assert len(set(sizes)) > len(sizes) // 2


def test_rerun_into_existing_folders_overwrites_file_by_file(tmp_path: Path) -> None:
    generate_dataset(tmp_path, seed=1, per_class=2, classes=("cross", "square"))
    before = _files(tmp_path)
    generate_dataset(tmp_path, seed=1, per_class=2, classes=("cross", "square"))
    assert _files(tmp_path) == before


@pytest.mark.parametrize("name", CLASSES + NEW_CLASSES)  # clutter has no shape to place
@pytest.mark.parametrize("size", [(400, 200), (170, 420), None])
def test_shape_lies_inside_the_centred_square_with_a_margin(
    name: str, size: tuple[int, int] | None
) -> None:
    for seed in range(3):
        image = render_image(name, np.random.default_rng([seed, len(name)]), size)
        pixels = np.asarray(image)
        height, width = pixels.shape[:2]
        side = min(width, height)
        # Outside the central 86% of the centred square (the shapes keep to the central 80%).
        inset = round(0.07 * side)
        top, left = (height - side) // 2 + inset, (width - side) // 2 + inset
        outside = np.ones((height, width), dtype=bool)
        outside[top : top + side - 2 * inset, left : left + side - 2 * inset] = False

        residual = _plane_residual(pixels, outside).max(axis=-1)
        assert np.count_nonzero(residual[outside] > 40) <= 3, "shape leaks past the margin"
        assert np.count_nonzero(residual[~outside] > 40) > 0.02 * side * side, "shape missing"


def test_random_sizes_respect_bounds_and_include_both_orientations() -> None:
    rng = np.random.default_rng(0)
    sizes = [render_image("circle", rng).size for _ in range(40)]
    assert all(MIN_SIDE <= w <= MAX_SIDE and MIN_SIDE <= h <= MAX_SIDE for w, h in sizes)
    assert all(MIN_ASPECT <= w / h <= MAX_ASPECT for w, h in sizes)
    assert any(w > h for w, h in sizes) and any(w < h for w, h in sizes)


def test_render_image_honours_an_explicit_size() -> None:
    image = render_image("triangle", np.random.default_rng(0), (300, 180))
    assert (image.size, image.mode) == ((300, 180), "RGB")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"per_class": 0}, "per_class must be at least 1"),
        ({"classes": ("circle", "octagon")}, "Unknown classes ['octagon']"),
        ({"classes": ("circle",)}, "at least 2 distinct classes"),
        ({"classes": ("ring", "ring")}, "at least 2 distinct classes"),
    ],
)
def test_generate_dataset_refuses_bad_arguments(
    tmp_path: Path, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        generate_dataset(tmp_path / "out", **kwargs)  # type: ignore[arg-type]
    assert not (tmp_path / "out").exists()


def test_render_image_refuses_unknown_class_and_tiny_size() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="Unknown class 'oval'"):
        render_image("oval", rng)
    with pytest.raises(ValueError, match="too small"):
        render_image("circle", rng, (20, 200))


@pytest.mark.parametrize(
    ("classes", "expected"),
    [
        ("new", NEW_CLASSES),
        ("demo", CLASSES),
        ("heart, ring", ("heart", "ring")),
        ("demo,clutter", (*CLASSES, "clutter")),
    ],
)
def test_demo_data_command_takes_a_class_set_or_a_list(
    tmp_path: Path, classes: str, expected: tuple[str, ...]
) -> None:
    out = tmp_path / "data"
    assert main(["demo-data", str(out), "--per-class", "1", "--classes", classes]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(expected)


def test_clutter_covers_backgrounds_gradients_noise_and_photo_like_textures() -> None:
    """Each kind of clutter is drawn, at the size asked, with none of a shape's flat foreground."""
    kinds = {kind.__name__ for kind in demo_data._CLUTTER_KINDS}
    assert kinds == {"_gradient_clutter", "_noise_clutter", "_texture_clutter"}
    for kind in demo_data._CLUTTER_KINDS:
        pixels = kind(np.random.default_rng(3), 300, 200)
        assert pixels.shape == (200, 300, 3) and pixels.dtype == np.float32
    images = [render_image("clutter", np.random.default_rng([7, i])) for i in range(40)]
    assert all(image.mode == "RGB" for image in images)
    # Noise and textures vary from pixel to pixel; backgrounds and gradients are smooth: both occur.
    roughness = [
        float(np.abs(np.diff(np.asarray(image, dtype=np.float32), axis=1)).mean())
        for image in images
    ]
    assert min(roughness) < 4 and max(roughness) > 20
    again = render_image("clutter", np.random.default_rng([7, 0]))
    assert again.tobytes() == images[0].tobytes()
