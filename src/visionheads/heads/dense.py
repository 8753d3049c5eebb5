"""Dense heads: per-pixel class scores from a backbone's stage maps (U-Net, SegNet-style).

Built from smp's decoder blocks, which upsample to a given size, so that any stride pattern fits
(inception's odd map sizes, VGG's stride-1 first stage, the small from-scratch bodies).
Every head returns scores at the resolution of the finest stage times its stride: about the input size;
the segmentation task resizes the last pixel or two.
"""

from __future__ import annotations

import torch
from segmentation_models_pytorch.decoders.unet.decoder import UnetDecoderBlock
from torch import nn

MIN_WIDTH, MAX_WIDTH = 16, 256  # smp's U-Net decoder spans 256 -> 16 too


def _widths(in_channels: list[int]) -> list[int]:
    # Mirror the encoder, as the original U-Net does (the block landing on stage i is as wide as stage i),
    # capped so that wide bodies (resnet50: 2048) don't get a decoder larger than themselves.
    return [min(MAX_WIDTH, max(MIN_WIDTH, c)) for c in in_channels]


def _full_size(features: list[torch.Tensor], strides: list[int]) -> tuple[int, int]:
    height, width = features[0].shape[-2:]
    return height * strides[0], width * strides[0]


class _Decoder(nn.Module):
    """Deepest map -> one UnetDecoderBlock per shallower stage (with or without its skip) -> full size -> scores."""

    def __init__(self, in_channels: list[int], strides: list[int], out_features: int, *, skips: bool) -> None:
        super().__init__()
        self.strides, self.skips = strides, skips
        widths = _widths(in_channels)
        blocks, width = [], in_channels[-1]
        for stage in range(len(in_channels) - 2, -1, -1):  # land on each shallower stage, deep to fine
            skip = in_channels[stage] if skips else 0
            blocks.append(UnetDecoderBlock(width, skip, widths[stage], interpolation_mode="nearest"))
            width = widths[stage]
        self.blocks = nn.ModuleList(blocks)
        self.final = None
        if strides[0] > 1:  # the finest stage is below input resolution: one more block up to it, no skip
            self.final = UnetDecoderBlock(width, 0, max(MIN_WIDTH, width // 2))
            width = max(MIN_WIDTH, width // 2)
        self.classifier = nn.Conv2d(width, out_features, 3, padding=1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        """features: stage maps, fine to coarse. Returns: scores (B, out_features, H0*s0, W0*s0)."""
        x = features[-1]
        for block, skip in zip(self.blocks, reversed(features[:-1]), strict=True):
            x = block(x, *skip.shape[-2:], skip_connection=skip if self.skips else None)
        if self.final is not None:
            x = self.final(x, *_full_size(features, self.strides))
        return self.classifier(x)


class UnetHead(_Decoder):
    """U-Net decoder: upsample, concatenate the same-resolution stage map, two 3x3 conv-BN-ReLU; per stage."""

    def __init__(self, in_channels: list[int], strides: list[int], out_features: int) -> None:
        super().__init__(in_channels, strides, out_features, skips=True)


class SegNetHead(_Decoder):
    """SegNet-style decoder: the encoder mirrored without skip connections (upsample, two 3x3 conv-BN-ReLU).

    The original SegNet upsamples with the max-pooling indices of its VGG encoder; backbones here hand heads
    their widths and strides only, so this one upsamples by nearest neighbour instead.
    """

    def __init__(self, in_channels: list[int], strides: list[int], out_features: int) -> None:
        super().__init__(in_channels, strides, out_features, skips=False)
