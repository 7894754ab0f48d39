"""Photo-like JPEGs made on the spot: the request bodies of every benchmark.

No photo can be downloaded where the benchmarks run, and flat synthetic shapes compress to a few
kilobytes, which would make decoding look far cheaper than it is for real uploads. These images mix
1/f ("pink") noise, the spectrum of natural scenes, with a smooth sky-to-ground gradient and a few
soft-edged blobs, so a 500x375 JPEG at quality 90 weighs and decodes like a phone photo scaled down
(roughly 40-90 KB). The same seed always gives the same bytes.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

WIDTH, HEIGHT = 500, 375
QUALITY = 90
DEFAULT_COUNT = 32
SPECTRUM_EXPONENT = 1.3  # amplitude ~ 1/f^1.3: between fine grain (1.0) and a blurred scene (2.0)


def _pink_noise(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Zero-mean, unit-variance noise whose amplitude falls as 1/f^SPECTRUM_EXPONENT."""
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    frequency = np.hypot(fy, fx)
    frequency[0, 0] = 1.0  # the DC term; zeroed below
    spectrum = rng.normal(size=frequency.shape) + 1j * rng.normal(size=frequency.shape)
    spectrum /= frequency**SPECTRUM_EXPONENT
    spectrum[0, 0] = 0.0
    noise = np.fft.irfft2(spectrum, s=(height, width))
    return noise / noise.std()


def _blobs(rng: np.random.Generator, height: int, width: int, count: int) -> np.ndarray:
    """A few soft-edged coloured ellipses (the "objects" of the scene), as an RGB offset."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    layer = np.zeros((height, width, 3), np.float32)
    for _ in range(count):
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        ry, rx = rng.uniform(20, height / 3), rng.uniform(20, width / 3)
        distance = ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2
        steepness = rng.uniform(3, 12)  # how blurred the edge is
        mask = 1.0 / (1.0 + np.exp(np.minimum((distance - 1.0) * steepness, 50.0)))
        layer += mask[..., None] * rng.uniform(-90, 90, size=3)
    return layer


def photo_like(seed: int, width: int = WIDTH, height: int = HEIGHT) -> Image.Image:
    """One deterministic photo-like RGB image."""
    rng = np.random.default_rng(seed)
    top, bottom = rng.uniform(60, 220, size=3), rng.uniform(30, 180, size=3)
    ramp = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    pixels = np.broadcast_to(top + (bottom - top) * ramp, (height, width, 3)).copy()
    pixels += _blobs(rng, height, width, count=int(rng.integers(3, 7)))
    luminance = _pink_noise(rng, height, width)[..., None]
    chroma = np.stack([_pink_noise(rng, height, width) for _ in range(3)], axis=-1)
    pixels += 28.0 * luminance + 9.0 * chroma
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def photo_jpegs(count: int = DEFAULT_COUNT, seed: int = 0) -> list[bytes]:
    """``count`` distinct 500x375 quality-90 JPEGs, the same bytes for the same arguments."""
    encoded = []
    for index in range(count):
        buffer = io.BytesIO()
        photo_like(seed * 100_003 + index).save(buffer, "JPEG", quality=QUALITY)
        encoded.append(buffer.getvalue())
    return encoded
