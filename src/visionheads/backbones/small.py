"""Small bodies for training from scratch: LeNet-5 (LeCun et al. 1998) and a bipyramidal conv stack."""

from __future__ import annotations

import torch
from torch import nn

from visionheads.backbones.registry import Backbone, register_backbone


class LeNet5(nn.Module):
    """LeNet-5's C1-S2-C3-S4-C5 layout: 5x5 convolutions, tanh, average-pool subsampling.

    The convolutions are same-padded so that any input of 16 px or more works (the 1998 net padded
    its 28x28 digits to 32x32 for the same reason); C5 keeps 120 maps and is pooled once more.
    """

    def __init__(self, in_chans: int) -> None:
        super().__init__()
        self.c1 = nn.Sequential(nn.Conv2d(in_chans, 6, 5, padding=2), nn.Tanh(), nn.AvgPool2d(2))  # S2
        self.c3 = nn.Sequential(nn.Conv2d(6, 16, 5, padding=2), nn.Tanh(), nn.AvgPool2d(2))  # S4
        self.c5 = nn.Sequential(nn.Conv2d(16, 120, 5, padding=2), nn.Tanh(), nn.AvgPool2d(2))

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        s2 = self.c1(images)  # (B, 6, H/2, W/2)
        s4 = self.c3(s2)  # (B, 16, H/4, W/4)
        c5 = self.c5(s4)  # (B, 120, H/8, W/8)
        return [s2, s4, c5]


def _conv_bn_relu(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class SimpleCNN(nn.Module):
    """A bipyramidal stack: each stage halves the resolution and doubles the width (32, 64, 128, 256)."""

    def __init__(self, in_chans: int, widths: tuple[int, ...] = (32, 64, 128, 256)) -> None:
        super().__init__()
        stages, previous = [], in_chans
        for width in widths:
            stages.append(nn.Sequential(_conv_bn_relu(previous, width, stride=2), _conv_bn_relu(width, width)))
            previous = width
        self.stages = nn.ModuleList(stages)
        self.widths = list(widths)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        feats, x = [], images
        for stage in self.stages:
            x = stage(x)  # (B, width, H/2^i, W/2^i)
            feats.append(x)
        return feats


def build_lenet5(*, in_chans: int, tag: str | None) -> Backbone:
    """LeNet-5 body: channels [6, 16, 120], strides [2, 4, 8]."""
    return Backbone(
        LeNet5(in_chans),
        name="lenet5",
        channels=[6, 16, 120],
        strides=[2, 4, 8],
        in_chans=in_chans,
        min_input_size=16,
        input_size=32,
    )


def build_simple_cnn(*, in_chans: int, tag: str | None) -> Backbone:
    """SimpleCNN body: channels [32, 64, 128, 256], strides [2, 4, 8, 16]."""
    body = SimpleCNN(in_chans)
    return Backbone(
        body,
        name="simple_cnn",
        channels=body.widths,
        strides=[2, 4, 8, 16],
        in_chans=in_chans,
        min_input_size=16,
        input_size=32,
    )


register_backbone("lenet5", build_lenet5, description="LeNet-5 (1998 layout), tanh + average pooling")
register_backbone("simple_cnn", build_simple_cnn, description="4-stage bipyramidal conv stack for small images")
