"""Seeded generator of a labelled image-folder dataset of drawn shapes.

The bundled demo ResNet-18 is fine-tuned on these images, and the HTTP tests use them as inputs of
known class. Every class is told apart by shape or pattern alone: colours, size, position, rotation,
background and noise are random, so a model cannot shortcut on colour. Serving resizes the shorter
side and centre-crops ``input_size / resize_size`` (e.g. 0.875) of the centred square, so shapes are
drawn inside the central 80% of that square and the sides of non-square images stay background.
"""

from __future__ import annotations

import math
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CLASSES: tuple[str, ...] = (
    "circle",
    "square",
    "triangle",
    "star",
    "cross",
    "ring",
    "stripes",
    "checkerboard",
)
# Shapes the demo model never saw: a new small task for showing what fine-tuning from it buys.
NEW_CLASSES: tuple[str, ...] = ("pentagon", "hexagon", "crescent", "arrow", "heart", "diamond")
# No shape at all: a model trained with it has a class to answer for images of none of its shapes
# (docs/finetuning.md measures what it buys). A quarter each: the shapes' backgrounds alone (some
# with a few thin strokes), two-colour gradients, noise, and photo-like 1/f textures.
CLUTTER = "clutter"
ALL_CLASSES = (*CLASSES, *NEW_CLASSES, CLUTTER)
# What ``demo-data --classes`` accepts besides a comma-separated list of class names.
CLASS_SETS: dict[str, tuple[str, ...]] = {"demo": CLASSES, "new": NEW_CLASSES}

MIN_SIDE, MAX_SIDE = 160, 480
MIN_ASPECT, MAX_ASPECT = 0.6, 1.7
MARGIN = 0.10  # gap between a shape and each edge of the centred square, as a fraction of its side
MIN_CONTRAST = 60.0  # luminance difference between foreground and every background pixel
_SUPERSAMPLE = 2  # the mask is drawn at 2x and box-downscaled: cheap anti-aliasing
_LUMA = np.array([0.299, 0.587, 0.114])
Point = tuple[float, float]


@dataclass(frozen=True)
class _Placement:
    """Where a shape goes in the supersampled square mask; r is the circumradius in pixels."""

    cx: float
    cy: float
    r: float
    angle: float
    side: float

    def polygon(self, draw: ImageDraw.ImageDraw, local: list[Point]) -> None:
        """Fill a polygon given in shape-local (u, v) coordinates, rotated and moved into place."""
        c, s = math.cos(self.angle), math.sin(self.angle)
        draw.polygon([(self.cx + u * c - v * s, self.cy + u * s + v * c) for u, v in local], 255)

    def disk(self, draw: ImageDraw.ImageDraw, radius: float, fill: int) -> None:
        box = (self.cx - radius, self.cy - radius, self.cx + radius, self.cy + radius)
        draw.ellipse(box, fill=fill)


_Drawer = Callable[[ImageDraw.ImageDraw, _Placement, np.random.Generator], None]


def _rect(u0: float, u1: float, v0: float, v1: float) -> list[Point]:
    return [(u0, v0), (u1, v0), (u1, v1), (u0, v1)]


def _star_points(outer: float, inner: float, tips: int) -> list[Point]:
    radii = [outer if k % 2 == 0 else inner for k in range(2 * tips)]
    return [
        (r * math.cos(math.pi * k / tips), r * math.sin(math.pi * k / tips))
        for k, r in enumerate(radii)
    ]


def _circle(draw: ImageDraw.ImageDraw, p: _Placement, rng: np.random.Generator) -> None:
    p.disk(draw, p.r, 255)


def _ring(draw: ImageDraw.ImageDraw, p: _Placement, rng: np.random.Generator) -> None:
    p.disk(draw, p.r, 255)
    p.disk(draw, p.r * rng.uniform(0.45, 0.65), 0)  # a hole this large never reads as a disk


def _square(draw: ImageDraw.ImageDraw, p: _Placement, rng: np.random.Generator) -> None:
    half = p.r / math.sqrt(2)
    p.polygon(draw, _rect(-half, half, -half, half))


def _triangle(draw: ImageDraw.ImageDraw, p: _Placement, rng: np.random.Generator) -> None:
    p.polygon(draw, _star_points(p.r, 0.0, 3)[::2])  # the tips of a 3-point star: equilateral


def _star(draw: ImageDraw.ImageDraw, p: _Placement, rng: np.random.Generator) -> None:
    p.polygon(draw, _star_points(p.r, p.r * rng.uniform(0.38, 0.5), 5))


def _cross(draw: ImageDraw.ImageDraw, p: _Placement, rng: np.random.Generator) -> None:
    width = p.r * rng.uniform(0.18, 0.28)
    arm = math.sqrt(p.r**2 - width**2)  # the arm corners lie on the circumcircle
    p.polygon(draw, _rect(-arm, arm, -width, width))
    p.polygon(draw, _rect(-width, width, -arm, arm))


def _stripes(draw: ImageDraw.ImageDraw, p: _Placement, rng: np.random.Generator) -> None:
    half = p.r / math.sqrt(2)
    # Odd counts put foreground bands on both edges; a band is never under 1/14 of the square,
    # so stripes survive downscaling to ~100 px and do not blur into a checkerboard.
    bands = int(rng.choice([n for n in (5, 7) if 2 * half / n >= p.side / 14]))
    width = 2 * half / bands
    for i in range(0, bands, 2):
        p.polygon(draw, _rect(-half + i * width, -half + (i + 1) * width, -half, half))


def _checkerboard(draw: ImageDraw.ImageDraw, p: _Placement, rng: np.random.Generator) -> None:
    half = p.r / math.sqrt(2)
    # Cells are never under 1/10 of the square; r >= 0.32 of the side always leaves room for 4.
    cells = int(rng.integers(4, int(2 * half / (p.side / 10)) + 1))
    width = 2 * half / cells
    for i in range(cells):
        for j in range(i % 2, cells, 2):
            u, v = -half + i * width, -half + j * width
            p.polygon(draw, _rect(u, u + width, v, v + width))


def _pentagon(draw: ImageDraw.ImageDraw, p: _Placement, rng: np.random.Generator) -> None:
    p.polygon(draw, _star_points(p.r, 0.0, 5)[::2])


def _hexagon(draw: ImageDraw.ImageDraw, p: _Placement, rng: np.random.Generator) -> None:
    p.polygon(draw, _star_points(p.r, 0.0, 6)[::2])


def _crescent(draw: ImageDraw.ImageDraw, p: _Placement, rng: np.random.Generator) -> None:
    p.disk(draw, p.r, 255)
    shift = p.r * rng.uniform(0.35, 0.5)  # the bite leaves a horn on each side, never a ring
    bite = _Placement(
        p.cx + shift * math.cos(p.angle), p.cy + shift * math.sin(p.angle), p.r, 0.0, p.side
    )
    bite.disk(draw, p.r * 0.9, 0)


def _arrow(draw: ImageDraw.ImageDraw, p: _Placement, rng: np.random.Generator) -> None:
    shaft = p.r * rng.uniform(0.15, 0.22)
    head = p.r * 0.6
    neck = p.r * 0.1
    tail = math.sqrt(p.r**2 - shaft**2)  # the tail's corners lie on the circumcircle
    outline = [(-tail, -shaft), (neck, -shaft), (neck, -head), (p.r, 0.0)]
    p.polygon(draw, outline + [(u, -v) for u, v in reversed(outline[:-1])])


def _heart(draw: ImageDraw.ImageDraw, p: _Placement, rng: np.random.Generator) -> None:
    # The classic parametric heart; its farthest point is 17/16 units out, so 0.92 keeps it inside.
    points = [
        (
            16 * math.sin(t) ** 3 / 16,
            -(13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)) / 16,
        )
        for t in np.linspace(0, 2 * math.pi, 64, endpoint=False)
    ]
    p.polygon(draw, [(0.92 * u * p.r, 0.92 * v * p.r) for u, v in points])


def _diamond(draw: ImageDraw.ImageDraw, p: _Placement, rng: np.random.Generator) -> None:
    width = p.r * rng.uniform(0.45, 0.6)  # elongated, so it never reads as a rotated square
    p.polygon(draw, [(p.r, 0.0), (0.0, width), (-p.r, 0.0), (0.0, -width)])


def _clutter(draw: ImageDraw.ImageDraw, p: _Placement, rng: np.random.Generator) -> None:
    for _ in range(int(rng.integers(0, 5))):  # none at all in one image of five
        (x0, y0), (x1, y1) = rng.uniform(0, p.side, size=(2, 2))
        draw.line([(x0, y0), (x1, y1)], fill=255, width=int(rng.integers(2, 7)))


# class -> (drawer, circumradius range as a fraction of the square's side)
_SHAPES: dict[str, tuple[_Drawer, tuple[float, float]]] = {
    "circle": (_circle, (0.16, 0.38)),
    "square": (_square, (0.18, 0.40)),
    "triangle": (_triangle, (0.20, 0.40)),
    "star": (_star, (0.22, 0.40)),
    "cross": (_cross, (0.22, 0.40)),
    "ring": (_ring, (0.20, 0.38)),
    "stripes": (_stripes, (0.32, 0.40)),
    "checkerboard": (_checkerboard, (0.32, 0.40)),
    "pentagon": (_pentagon, (0.20, 0.40)),
    "hexagon": (_hexagon, (0.20, 0.40)),
    "crescent": (_crescent, (0.22, 0.40)),
    "arrow": (_arrow, (0.24, 0.40)),
    "heart": (_heart, (0.22, 0.38)),
    "diamond": (_diamond, (0.22, 0.40)),
    CLUTTER: (_clutter, (0.20, 0.40)),
}


def _random_size(rng: np.random.Generator) -> tuple[int, int]:
    width = int(rng.integers(MIN_SIDE, MAX_SIDE + 1))
    low = max(MIN_SIDE, math.ceil(width / MAX_ASPECT))
    high = min(MAX_SIDE, math.floor(width / MIN_ASPECT))
    return width, int(rng.integers(low, high + 1))


def _shape_mask(class_name: str, rng: np.random.Generator, side: int) -> np.ndarray:
    """Float mask in [0, 1] of the centred square: 1 where the shape is."""
    drawer, (r_low, r_high) = _SHAPES[class_name]
    big = side * _SUPERSAMPLE
    r = rng.uniform(r_low, r_high) * big
    slack = big * (0.5 - MARGIN) - r  # how far the centre may move and keep the margin
    cx, cy = big / 2 + rng.uniform(-slack, slack, size=2)
    canvas = Image.new("L", (big, big), 0)
    placement = _Placement(cx, cy, r, rng.uniform(0, 2 * math.pi), big)
    drawer(ImageDraw.Draw(canvas), placement, rng)
    return np.asarray(canvas.reduce(_SUPERSAMPLE), dtype=np.float32) / 255.0


def _colours(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Background gradient endpoints and a foreground that contrasts with both."""
    start = rng.uniform(0, 255, size=3)
    plain = rng.random() < 0.5
    end = start if plain else np.clip(start + rng.uniform(-50, 50, size=3), 0, 255)
    low, high = sorted((float(start @ _LUMA), float(end @ _LUMA)))
    # Luminance is linear, so contrast with both endpoints means contrast along the gradient.
    # The gradient spans < 60 luminance, so one side of it always leaves room and this ends.
    while True:
        fg = rng.uniform(0, 255, size=3)
        if fg @ _LUMA <= low - MIN_CONTRAST or fg @ _LUMA >= high + MIN_CONTRAST:
            return start, end, fg


def render_image(
    class_name: str, rng: np.random.Generator, size: tuple[int, int] | None = None
) -> Image.Image:
    """Draw one RGB image of ``class_name``; ``size`` is (width, height), random when None.

    Everything but the class is random (colours, size, position, rotation, background, noise), and
    the shape lies inside the central 80% of the centred square that serving crops to.
    """
    if class_name not in _SHAPES:
        raise ValueError(f"Unknown class {class_name!r}; choose one of {', '.join(ALL_CLASSES)}.")
    width, height = _random_size(rng) if size is None else size
    if min(width, height) < 32:
        raise ValueError(f"Image size {width}x{height} is too small; both sides must be >= 32.")
    if class_name == CLUTTER:
        kind = int(rng.integers(0, 1 + len(_CLUTTER_KINDS)))
        if kind < len(_CLUTTER_KINDS):
            pixels = _CLUTTER_KINDS[kind](rng, width, height)
            return _finish(pixels, rng)
    side = min(width, height)
    alpha = np.zeros((height, width, 1), dtype=np.float32)
    top, left = (height - side) // 2, (width - side) // 2
    alpha[top : top + side, left : left + side, 0] = _shape_mask(class_name, rng, side)

    start, end, fg = (c.astype(np.float32) for c in _colours(rng))
    theta = rng.uniform(0, 2 * math.pi)
    xs, ys = np.meshgrid(np.arange(width), np.arange(height), sparse=True)
    along = xs * math.cos(theta) + ys * math.sin(theta)
    t = ((along - along.min()) / max(float(np.ptp(along)), 1.0)).astype(np.float32)
    background = start + t[..., None] * (end - start)

    return _finish(background + alpha * (fg - background), rng)


def _finish(pixels: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """Add a little sensor noise and round to an 8-bit RGB image."""
    pixels = pixels + rng.standard_normal(pixels.shape, dtype=np.float32) * np.float32(
        rng.uniform(0, 8)
    )
    return Image.fromarray(np.clip(pixels + 0.5, 0, 255).astype(np.uint8))


def _ramp(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A float32 (height, width) field in [0, 1]: linear at a random angle, or radial."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    if rng.random() < 0.5:
        theta = rng.uniform(0, 2 * math.pi)
        field = xs * math.cos(theta) + ys * math.sin(theta)
    else:
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        field = np.hypot(xs - cx, ys - cy)
    return (field - field.min()) / max(float(np.ptp(field)), 1.0)


def _gradient_clutter(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Two colours of any contrast blended along a linear or radial ramp, sometimes a curved one."""
    start, end = rng.uniform(0, 255, size=(2, 3)).astype(np.float32)
    t = _ramp(rng, width, height) ** np.float32(rng.uniform(0.5, 2.0))
    return start + t[..., None] * (end - start)


def _noise_clutter(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Uniform or Gaussian RGB noise, per pixel or in smooth blobs of up to 1/8 of the image."""
    cell = int(rng.choice([1, 1, 2, 4, 8, 16, 32]))
    small = (max(1, height // cell), max(1, width // cell), 3)
    if rng.random() < 0.5:
        noise = rng.uniform(0, 255, size=small)
    else:
        noise = rng.uniform(40, 215, size=3) + rng.normal(0, rng.uniform(15, 80), size=small)
    image = Image.fromarray(np.clip(noise, 0, 255).astype(np.uint8))
    return np.asarray(image.resize((width, height), Image.Resampling.BICUBIC), dtype=np.float32)


def _texture_clutter(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Photo-like texture: noise whose power falls as 1/f^beta (natural images have beta near 2).

    One luminance field and two weaker colour fields, each with its own beta, so the result has the
    soft edges, blobs and grain of a blurred photograph but no shape of any class.
    """
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    f = np.hypot(fx, fy)
    f[0, 0] = 1.0
    fields = []
    for _ in range(3):
        spectrum = rng.standard_normal(f.shape) + 1j * rng.standard_normal(f.shape)
        field = np.fft.irfft2(spectrum / f ** (rng.uniform(1.5, 3.0) / 2), s=(height, width))
        fields.append((field - field.mean()) / max(float(field.std()), 1e-6))
    base = rng.uniform(40, 215, size=3)
    luma = fields[0][..., None] * rng.uniform(15, 60)
    chroma = np.stack(fields[1:], axis=-1) @ rng.uniform(-1, 1, size=(2, 3)) * rng.uniform(0, 25)
    return (base + luma + chroma).astype(np.float32)


_ClutterKind = Callable[[np.random.Generator, int, int], np.ndarray]
# Besides these, one clutter image in four is a shape's background with a few strokes (_clutter).
_CLUTTER_KINDS: tuple[_ClutterKind, ...] = (_gradient_clutter, _noise_clutter, _texture_clutter)


def generate_dataset(
    out_dir: Path, *, seed: int = 0, per_class: int = 150, classes: Sequence[str] = CLASSES
) -> dict[str, int]:
    """Write ``out_dir/<class>/<class>_<index:05d>.jpg`` and return the image count per class.

    Each image has its own generator seeded from (seed, index of the class in ``ALL_CLASSES``,
    image index), so the same seed gives byte-identical files whatever ``classes`` or the order.
    Existing files are overwritten one by one.
    """
    if per_class < 1:
        raise ValueError(f"per_class must be at least 1, got {per_class}.")
    unknown = sorted(set(classes) - set(ALL_CLASSES))
    if unknown:
        raise ValueError(f"Unknown classes {unknown}; choose from {', '.join(ALL_CLASSES)}.")
    names = list(dict.fromkeys(classes))
    if len(names) < 2:
        raise ValueError(f"A classifier needs at least 2 distinct classes, got {names}.")

    jobs = []
    for name in names:
        folder = Path(out_dir) / name
        folder.mkdir(parents=True, exist_ok=True)
        jobs += [(folder, name, seed, index) for index in range(per_class)]
    _run_jobs(jobs)
    return dict.fromkeys(names, per_class)


_Job = tuple[Path, str, int, int]
PARALLEL_FROM = 100  # fewer images than this are drawn in-process: starting workers costs more


def _write_image(job: _Job) -> None:
    folder, name, seed, index = job
    rng = np.random.default_rng([seed, ALL_CLASSES.index(name), index])
    image = render_image(name, rng)
    quality = int(rng.integers(70, 96))
    image.save(folder / f"{name}_{index:05d}.jpg", format="JPEG", quality=quality)


def _run_jobs(jobs: list[_Job]) -> None:
    """Draw on every core: each image has its own seed, so the files do not depend on the order.

    Workers are spawned, not forked: the caller may have torch loaded, and forking a process that
    holds its thread pools is unsafe.
    """
    workers = min(os.cpu_count() or 1, 8)
    if len(jobs) < PARALLEL_FROM or workers == 1:
        for job in jobs:
            _write_image(job)
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        for _ in pool.map(_write_image, jobs, chunksize=16):
            pass
