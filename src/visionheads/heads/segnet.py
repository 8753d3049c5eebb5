"""SegNet (Badrinarayanan, Kendall, Cipolla 2015): a decoder that mirrors a VGG encoder and upsamples by
max-unpooling with the encoder's own pooling indices, so each value goes back to where its maximum was found.

The body hands the indices over (`Backbone.forward_with_pool_indices`); the decoder holds no skip connections,
only the indices, which is what makes SegNet lighter than a U-Net and sharper at boundaries than plain upsampling.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from visionheads.backbones.pooling import PoolIndices
from visionheads.errors import ConfigError


def _conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def unpool(x: torch.Tensor, pool: PoolIndices) -> torch.Tensor:
    """x (B, C, h, w) to (B, C, H, W): each value at its pool's argmax position, zeros elsewhere."""
    return F.max_unpool2d(x, pool.indices, kernel_size=2, stride=2, output_size=pool.size)


class SegNetHead(nn.Module):
    """Per pool, deep to shallow: unpool with its indices, then `convs` 3x3 conv-BN-ReLU at that stage's width
    (the last one narrowing to the next shallower stage's); a 3x3 classifier at input resolution.

    in_channels: the widths of the maps each pool reads, fine to coarse, then the last pool's output (the body's
    `channels`, e.g. VGG's [64, 128, 256, 512, 512, 512]). The paper repeats each encoder stage's conv count
    (2 or 3 for VGG16); `convs` sets one count for every stage. `unpools` (default: one per pool) decodes from
    the map that pool `unpools + 1` reads, through the first `unpools` pools only: on small images VGG's 5th
    pool leaves 2x2 cells, too coarse to place a shape (docs/segmentation.md measures 3, 4 and 5 at 64 px).
    """

    def __init__(
        self,
        in_channels: list[int],
        strides: list[int],
        out_features: int,
        *,
        convs: int = 2,
        unpools: int | None = None,
    ) -> None:
        super().__init__()
        pools = len(in_channels) - 1
        if unpools is not None and (
            isinstance(unpools, bool) or not isinstance(unpools, int) or not 1 <= unpools <= pools
        ):
            raise ConfigError(
                f"segnet: unpools={unpools!r}, but this body has {pools} pools; use 1..{pools} (or None: all)"
            )
        self.unpools = pools if unpools is None else unpools
        self.maps_read = self.unpools + 1  # the body's stage maps it decodes from: those pools read, and one more
        widths = in_channels[: self.unpools]  # what pool i read: the width its unpooled map is decoded at
        stages = []
        for stage in range(len(widths) - 1, -1, -1):
            narrower = widths[stage - 1] if stage > 0 else widths[0]
            layers = [_conv_bn_relu(widths[stage], widths[stage]) for _ in range(max(0, convs - 1))]
            stages.append(nn.Sequential(*layers, _conv_bn_relu(widths[stage], narrower)))
        self.stages = nn.ModuleList(stages)  # deep to shallow
        # Decoding from a map deeper than the last pool used: unpooling needs that pool's input width.
        entry, unpooled = in_channels[self.unpools], in_channels[self.unpools - 1]
        self.entry = nn.Identity() if entry == unpooled else _conv_bn_relu(entry, unpooled)
        self.classifier = nn.Conv2d(widths[0], out_features, 3, padding=1)

    def forward(self, features: list[torch.Tensor], pools: list[PoolIndices]) -> torch.Tensor:
        """features: stage maps, fine to coarse; pools: their pools' indices, shallow to deep.
        Returns: scores (B, out_features, H, W) at the input's size."""
        # (B, C, H/2^n, W/2^n): the last pool's output, or what pool n+1 reads when decoding from n < all pools
        x = self.entry(features[self.unpools])
        for stage, pool in zip(self.stages, reversed(pools[: self.unpools]), strict=True):
            x = stage(unpool(x, pool))  # (B, C', H_i, W_i)
        return self.classifier(x)
