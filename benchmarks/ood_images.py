"""A folder of images of none of the demo classes, for ``resnet-serve evaluate --ood``.

    python -m benchmarks.ood_images OUT [--per-kind 40] [--seed 0]

Writes OUT/<kind>/<kind>_NNN.jpg for four kinds of image with none of the demo shapes, with no
network: ``photo`` (random crops of the photograph matplotlib ships as sample data), ``noise``
(uniform RGB noise), ``gradient`` (smooth two-colour ramps, the demo images' background with no
shape on it) and ``texture`` (photo-like: a field with a natural image's 1/f^2 power spectrum,
coloured through a random three-colour palette, like clouds, rock or foliage out of focus). The
demo bundle's ``clutter`` class was trained on gradients, noise and 1/f textures drawn by
``demo-data`` (other code, other seeds, a different colouring); these test them. The shapes the
demo model never saw come from ``resnet-serve demo-data --classes new``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from matplotlib import cbook
from PIL import Image

PHOTO = "grace_hopper.jpg"  # 512x600, in matplotlib's sample data


def _photo_crop(photo: Image.Image, rng: np.random.Generator) -> Image.Image:
    side = int(rng.integers(160, min(photo.size)))
    left = int(rng.integers(0, photo.width - side + 1))
    top = int(rng.integers(0, photo.height - side + 1))
    return photo.crop((left, top, left + side, top + side)).resize((224, 224))


def _noise(rng: np.random.Generator) -> Image.Image:
    return Image.fromarray(rng.integers(0, 256, (224, 224, 3), dtype=np.uint8))


def _gradient(rng: np.random.Generator) -> Image.Image:
    start, end = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    theta = rng.uniform(0, 2 * np.pi)
    ys, xs = np.mgrid[0:224, 0:224]
    along = xs * np.cos(theta) + ys * np.sin(theta)
    t = (along - along.min()) / np.ptp(along)
    return Image.fromarray((start + t[..., None] * (end - start)).astype(np.uint8))


def _texture(rng: np.random.Generator) -> Image.Image:
    fy, fx = np.fft.fftfreq(224)[:, None], np.fft.rfftfreq(224)[None, :]
    f = np.hypot(fx, fy)
    f[0, 0] = 1.0
    spectrum = rng.standard_normal(f.shape) + 1j * rng.standard_normal(f.shape)
    field = np.fft.irfft2(spectrum / f ** rng.uniform(0.9, 1.2), s=(224, 224))
    field = (field - field.min()) / np.ptp(field)
    palette = rng.uniform(0, 255, (3, 3))
    pixels = np.stack([np.interp(field, [0, 0.5, 1], palette[:, c]) for c in range(3)], -1)
    pixels += rng.normal(0, rng.uniform(0, 6), pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def write_ood_images(out: Path, per_kind: int, seed: int) -> int:
    """Write ``per_kind`` images of each kind; returns how many were written."""
    with cbook.get_sample_data(PHOTO) as handle:
        photo = Image.open(handle).convert("RGB")
    rng = np.random.default_rng(seed)
    kinds = {
        "photo": lambda: _photo_crop(photo, rng),
        "noise": lambda: _noise(rng),
        "gradient": lambda: _gradient(rng),
        "texture": lambda: _texture(rng),
    }
    for kind, draw in kinds.items():
        folder = out / kind
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(per_kind):
            draw().save(folder / f"{kind}_{index:03d}.jpg", format="JPEG", quality=90)
    return per_kind * len(kinds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--per-kind", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    written = write_ood_images(args.out, args.per_kind, args.seed)
    print(f"wrote {written} out-of-class images to {args.out}")


if __name__ == "__main__":
    main()
