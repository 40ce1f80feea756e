"""He et al. (2016)'s CIFAR residual networks, §4.2: a 3×3 convolution to
16 channels, then three stages of n basic blocks each (16, 32, 64 channels;
the second and third stages halve the map in their first block), global
average pooling and a linear read-out: 6n + 2 layers with weights
(ResNet-20: n = 3). A basic block is conv–BN–ReLU–conv–BN plus the
shortcut, then ReLU; where a block changes the shape its shortcut is a
strided 1×1 convolution with batch norm (the paper's option B).
"""
from __future__ import annotations

from torch import nn

from .blocks import Residual

__all__ = ["resnet", "resnet_depths"]

STAGE_CHANNELS = (16, 32, 64)


def resnet_depths() -> tuple[int, ...]:
    """The depths the family is usually run at (any 6n + 2 builds)."""
    return (8, 14, 20, 32, 56)


def _basic_block(channels_in: int, channels: int, stride: int) -> list[nn.Module]:
    body = nn.Sequential(
        nn.Conv2d(channels_in, channels, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(channels),
        nn.ReLU(),
        nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels))
    shortcut = None
    if stride != 1 or channels_in != channels:
        shortcut = nn.Sequential(nn.Conv2d(channels_in, channels, 1, stride=stride, bias=False),
                                 nn.BatchNorm2d(channels))
    return [Residual(body, shortcut), nn.ReLU()]


def resnet(depth: int = 20, in_channels: int = 3, num_classes: int = 10) -> nn.Sequential:
    """ResNet-``depth`` (depth = 6n + 2) on images of ``in_channels``
    channels, of any size (global average pooling before the read-out).
    Convolutions start from He et al.'s N(0, 2/fan_out), batch norms at
    γ = 1, β = 0."""
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"a CIFAR ResNet has depth 6n + 2 (8, 14, 20, 32, 56, ...), not {depth}")
    blocks = (depth - 2) // 6
    layers: list[nn.Module] = [nn.Conv2d(in_channels, STAGE_CHANNELS[0], 3, padding=1, bias=False),
                               nn.BatchNorm2d(STAGE_CHANNELS[0]), nn.ReLU()]
    channels = STAGE_CHANNELS[0]
    for stage, width in enumerate(STAGE_CHANNELS):
        for block in range(blocks):
            stride = 2 if stage > 0 and block == 0 else 1
            layers += _basic_block(channels, width, stride)
            channels = width
    model = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes))
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    return model
