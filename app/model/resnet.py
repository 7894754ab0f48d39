"""ResNet-18/34/50/101/152 written from scratch.

Attribute names (``conv1``, ``bn1``, ``layer1`` ... ``layer4``, ``downsample.0``/``.1``, ``fc``) are the
state-dict contract with torchvision: a torchvision checkpoint loads with ``strict=True`` unchanged.
Like torchvision (and unlike the original paper) the Bottleneck strides on its 3x3 convolution, the
"ResNet v1.5" variant, which is slightly more accurate.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution with padding 1; bias is redundant before BatchNorm."""
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution, used for channel changes and the projection shortcut."""
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with an identity (or projected) shortcut: ResNet-18 and -34."""

    expansion = 1

    def __init__(
        self, in_channels: int, width: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_channels, width, stride)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(width, width)
        self.bn2 = nn.BatchNorm2d(width)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn2


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand (x4) with a shortcut: ResNet-50, -101 and -152."""

    expansion = 4

    def __init__(
        self, in_channels: int, width: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = conv1x1(in_channels, width)
        self.bn1 = nn.BatchNorm2d(width)
        # Stride on the 3x3 (v1.5), not on the first 1x1 as in the paper.
        self.conv2 = conv3x3(width, width, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, width * self.expansion)
        self.bn3 = nn.BatchNorm2d(width * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += identity
        return self.relu(out)

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn3


Block = type[BasicBlock] | type[Bottleneck]


class ResNet(nn.Module):
    """Stem, four residual stages, global average pool and a linear head.

    ``forward_features`` and ``forward_head`` are split so fine-tuning can freeze or replace one half.
    """

    def __init__(
        self,
        block: Block,
        layers: list[int],
        num_classes: int = 1000,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        if len(layers) != 4 or any(n < 1 for n in layers):
            raise ValueError(f"layers must be four positive block counts, got {layers}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        self.in_channels = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.num_features = 512 * block.expansion
        self.fc = nn.Linear(self.num_features, num_classes)
        self._init_weights(zero_init_residual)

    def _make_layer(self, block: Block, width: int, blocks: int, stride: int = 1) -> nn.Sequential:
        """One stage; carries the output channel count over to the next stage in ``in_channels``."""
        out_channels = width * block.expansion
        downsample = None
        if stride != 1 or self.in_channels != out_channels:
            downsample = nn.Sequential(
                conv1x1(self.in_channels, out_channels, stride), nn.BatchNorm2d(out_channels)
            )
        stage = [block(self.in_channels, width, stride, downsample)]
        self.in_channels = out_channels
        stage += [block(out_channels, width) for _ in range(1, blocks)]
        return nn.Sequential(*stage)

    def _init_weights(self, zero_init_residual: bool) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        if zero_init_residual:
            # Each residual branch starts as zero, so every block begins as the identity.
            for module in self.modules():
                if isinstance(module, BasicBlock | Bottleneck):
                    nn.init.zeros_(module.last_bn().weight)

    def forward_features(self, x: Tensor) -> Tensor:
        """Image batch (N, 3, H, W) -> pooled features (N, num_features)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)

    def forward_head(self, features: Tensor) -> Tensor:
        return self.fc(features)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the head with a freshly initialised one for ``num_classes`` outputs."""
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        self.fc = nn.Linear(self.num_features, num_classes)


ARCHITECTURES: dict[str, tuple[Block, list[int]]] = {
    "resnet18": (BasicBlock, [2, 2, 2, 2]),
    "resnet34": (BasicBlock, [3, 4, 6, 3]),
    "resnet50": (Bottleneck, [3, 4, 6, 3]),
    "resnet101": (Bottleneck, [3, 4, 23, 3]),
    "resnet152": (Bottleneck, [3, 8, 36, 3]),
}


def check_arch(arch: str) -> str:
    """Return ``arch`` if it names one of ``ARCHITECTURES``; otherwise raise ``ValueError``."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown arch {arch!r}; expected one of {', '.join(ARCHITECTURES)}")
    return arch


def build_resnet(arch: str, num_classes: int = 1000, zero_init_residual: bool = False) -> ResNet:
    """Build one of ``ARCHITECTURES`` by name; unknown names raise ``ValueError``."""
    block, layers = ARCHITECTURES[check_arch(arch)]
    return ResNet(block, layers, num_classes, zero_init_residual)


def _builder(arch: str) -> Callable[..., ResNet]:
    def build(num_classes: int = 1000, zero_init_residual: bool = False) -> ResNet:
        return build_resnet(arch, num_classes, zero_init_residual)

    build.__name__ = arch
    build.__doc__ = f"{arch} with ``num_classes`` outputs."
    return build


resnet18 = _builder("resnet18")
resnet34 = _builder("resnet34")
resnet50 = _builder("resnet50")
resnet101 = _builder("resnet101")
resnet152 = _builder("resnet152")
