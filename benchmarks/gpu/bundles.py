"""Random-weight bundles of any architecture and input size, made on the spot.

Throughput does not depend on what the weights are, so an ImageNet-shaped bundle (1000 classes,
resize 256 -> crop 224) with random weights measures what a fine-tuned ResNet-50 would, without a
checkpoint download. Weights are stored as fp16 (half the bytes to write); loading casts them to the
run's precision as it would for any bundle.

    python -m benchmarks.gpu.bundles /tmp/resnet50-224 --arch resnet50 --input-size 224
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from app.model.bundle import BundleManifest, Provenance, save_bundle
from app.model.preprocessing import PreprocessingSpec
from app.model.resnet import ARCHITECTURES, build_resnet

IMAGENET_CLASSES = 1000
RESIZE_RATIO = 256 / 224  # ImageNet's evaluation recipe: resize the shorter side, crop the centre


def write_random_bundle(
    directory: Path,
    arch: str,
    input_size: int,
    num_classes: int = IMAGENET_CLASSES,
    seed: int = 0,
) -> Path:
    """Save a ``arch`` with seeded random weights as a bundle in ``directory``; returns it."""
    torch.manual_seed(seed)
    manifest = BundleManifest(
        name=directory.name,
        arch=arch,
        num_classes=num_classes,
        labels=[f"class-{index:03d}" for index in range(num_classes)],
        preprocessing=PreprocessingSpec(
            input_size=input_size, resize_size=round(input_size * RESIZE_RATIO)
        ),
        provenance=Provenance(dataset="none: random weights, for benchmarks"),
    )
    model = build_resnet(arch, num_classes)
    return save_bundle(directory, model, manifest, weights_dtype=torch.float16)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--arch", choices=tuple(ARCHITECTURES), default="resnet50")
    parser.add_argument("--input-size", type=int, default=224)
    args = parser.parse_args()
    print(write_random_bundle(args.directory, args.arch, args.input_size))


if __name__ == "__main__":
    main()
