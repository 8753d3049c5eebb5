"""Dense heads: per-pixel class scores from a backbone's stage maps (U-Net, SegNet-lite, FPN, DeepLabV3+).

Built from smp's decoder blocks, upsampling to the size of the map they meet, so that any stride pattern fits
(inception's odd map sizes, VGG's stride-1 first stage, the small from-scratch bodies).
Every head returns scores at the resolution of the finest stage times its stride: about the input size;
the segmentation task resizes the last pixel or two.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from segmentation_models_pytorch.decoders.deeplabv3.decoder import ASPP, SeparableConv2d
from segmentation_models_pytorch.decoders.fpn.decoder import Conv3x3GNReLU
from segmentation_models_pytorch.decoders.unet.decoder import UnetDecoderBlock
from torch import nn
from torch.nn import functional as F

from visionheads.errors import ConfigError, as_written

MIN_WIDTH, MAX_WIDTH = 16, 256  # smp's U-Net decoder spans 256 -> 16 too


def mirrored_widths(in_channels: list[int]) -> list[int]:
    """Decoder widths that mirror the encoder's stages, kept within MIN_WIDTH..MAX_WIDTH."""
    # Mirror the encoder, as the original U-Net does (the block landing on stage i is as wide as stage i),
    # capped so that wide bodies (resnet50: 2048) don't get a decoder larger than themselves.
    return [min(MAX_WIDTH, max(MIN_WIDTH, c)) for c in in_channels]


def _full_size(features: list[torch.Tensor], strides: list[int]) -> tuple[int, int]:
    height, width = features[0].shape[-2:]
    return height * strides[0], width * strides[0]


def decoder_widths(in_channels: list[int], strides: list[int], asked: Sequence[int] | None) -> list[int]:
    """The width of each decoder block, deep to fine (the last one at full size when the finest stage is below it).

    `asked` is smp's `decoder_channels` (e.g. 256, 128, 64, 32, 16); None mirrors the encoder.
    """
    blocks = len(in_channels) - 1 + (strides[0] > 1)
    if asked is None:
        widths = mirrored_widths(in_channels)[-2::-1]  # the block landing on stage i is as wide as stage i
        return widths + [max(MIN_WIDTH, widths[-1] // 2)] if strides[0] > 1 else widths
    widths = list(asked)
    if len(widths) != blocks or not all(isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in widths):
        raise ConfigError(
            f"decoder_channels={as_written(asked)}: this body needs {blocks} positive widths, deep to fine "
            f"(one per decoder block), e.g. {[min(MAX_WIDTH, 16 * 2**i) for i in range(blocks)][::-1]}"
        )
    return widths


class _Decoder(nn.Module):
    """Deepest map -> one UnetDecoderBlock per shallower stage (with or without its skip) -> full size -> scores.

    `decoder_channels`: each block's width, deep to fine, as smp's `Unet(decoder_channels=...)`; None mirrors the
    encoder's stages (narrower and faster than smp's 256, 128, 64, 32, 16).
    """

    skips: ClassVar[bool]  # each block concatenates the same-resolution stage map (U-Net) or not (SegNet's shape)

    def __init__(
        self,
        in_channels: list[int],
        strides: list[int],
        out_features: int,
        *,
        decoder_channels: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.strides = strides
        skips = self.skips
        widths = decoder_widths(in_channels, strides, decoder_channels)
        blocks, width = [], in_channels[-1]
        for stage, out in zip(range(len(in_channels) - 2, -1, -1), widths, strict=False):  # deep to fine
            skip = in_channels[stage] if skips else 0
            blocks.append(UnetDecoderBlock(width, skip, out, interpolation_mode="nearest"))
            width = out
        self.blocks = nn.ModuleList(blocks)
        self.final = None
        if strides[0] > 1:  # the finest stage is below input resolution: one more block up to it, no skip
            self.final = UnetDecoderBlock(width, 0, widths[-1])
            width = widths[-1]
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

    skips = True


class SegNetLiteHead(_Decoder):
    """SegNet without its indices: the encoder mirrored without skips (nearest upsampling, two 3x3 conv-BN-ReLU).

    Fits any body; `SegNetHead` is the 2015 design, which unpools with a VGG encoder's max-pooling indices.
    """

    skips = False


class FPNHead(nn.Module):
    """Semantic FPN (Kirillov et al. 2019, smp's `FPN`) over the (up to) four deepest stages.

    Lateral 1x1 convs, a top-down path that adds each coarser level upsampled, one 3x3 conv-GN-ReLU per level,
    all levels upsampled to the finest and summed, then a 1x1 classifier.
    """

    def __init__(
        self,
        in_channels: list[int],
        strides: list[int],
        out_features: int,
        *,
        pyramid_channels: int = 128,
        segmentation_channels: int = 64,  # GroupNorm(32, ...) needs a multiple of 32
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        self.strides = strides
        self.first = max(0, len(in_channels) - 4)
        levels = in_channels[self.first :]
        self.lateral = nn.ModuleList(nn.Conv2d(c, pyramid_channels, 1) for c in levels)
        self.smooth = nn.ModuleList(Conv3x3GNReLU(pyramid_channels, segmentation_channels) for _ in levels)
        self.classifier = nn.Sequential(nn.Dropout2d(dropout), nn.Conv2d(segmentation_channels, out_features, 1))

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        """features: stage maps, fine to coarse. Returns: scores (B, out_features, H0*s0, W0*s0)."""
        maps = features[self.first :]
        top = self.lateral[-1](maps[-1])
        merged = self.smooth[-1](top)
        finest = maps[0].shape[-2:]
        merged = F.interpolate(merged, size=finest, mode="bilinear", align_corners=False)
        for level in range(len(maps) - 2, -1, -1):  # top-down: coarse to fine
            top = self.lateral[level](maps[level]) + F.interpolate(top, size=maps[level].shape[-2:], mode="nearest")
            merged = merged + F.interpolate(self.smooth[level](top), size=finest, mode="bilinear", align_corners=False)
        scores = self.classifier(merged)  # (B, K, finest level)
        return F.interpolate(scores, size=_full_size(features, self.strides), mode="bilinear", align_corners=False)


class DeepLabV3PlusHead(nn.Module):
    """DeepLabV3+ (Chen et al. 2018) with smp's ASPP: atrous pyramid on the deepest map, fused with the stride-4 map.

    The body is not dilated, so the atrous rates (6, 12, 18 at output stride 16) scale with the deepest stride.
    """

    LOW_LEVEL_STRIDE, LOW_LEVEL_CHANNELS = 4, 48  # as in the paper

    def __init__(
        self, in_channels: list[int], strides: list[int], out_features: int, *, aspp_channels: int = 128
    ) -> None:
        super().__init__()
        self.strides = strides
        self.low = min(range(len(strides) - 1), key=lambda i: abs(strides[i] - self.LOW_LEVEL_STRIDE))
        rates = tuple(max(1, round(rate * 16 / strides[-1])) for rate in (6, 12, 18))
        self.aspp = ASPP(in_channels[-1], aspp_channels, rates, separable=True, dropout=0.1)
        self.low_projection = nn.Sequential(
            nn.Conv2d(in_channels[self.low], self.LOW_LEVEL_CHANNELS, 1, bias=False),
            nn.BatchNorm2d(self.LOW_LEVEL_CHANNELS),
            nn.ReLU(inplace=True),
        )
        self.fuse = nn.Sequential(
            SeparableConv2d(self.LOW_LEVEL_CHANNELS + aspp_channels, aspp_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(aspp_channels),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Conv2d(aspp_channels, out_features, 1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        """features: stage maps, fine to coarse. Returns: scores (B, out_features, H0*s0, W0*s0)."""
        low = self.low_projection(features[self.low])
        context = F.interpolate(self.aspp(features[-1]), size=low.shape[-2:], mode="bilinear", align_corners=False)
        scores = self.classifier(self.fuse(torch.cat([context, low], dim=1)))
        return F.interpolate(scores, size=_full_size(features, self.strides), mode="bilinear", align_corners=False)
