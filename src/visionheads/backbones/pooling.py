"""Max-pooling indices of an encoder, for decoders that unpool with them (SegNet, Badrinarayanan et al. 2015).

A body hands them over when it is a flat sequence of layers (timm's `FeatureListNet`, e.g. the VGG bodies) whose
every downsampling is a 2x2 max pool of stride 2, and whose stage maps are the maps each pool reads, plus the last
pool's output: stage i (stride 2^i) is pooled by pool i. Running it records, for each pool, where each maximum was.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

# The registry entries that hand indices over (tests/backbones/test_backbones.py checks this against every entry).
POOL_INDEXED_BACKBONES = ("vgg11_bn", "vgg16_bn")


@dataclass(frozen=True)
class PoolIndices:
    """Where one 2x2 max pool found its maxima: `indices` (B, C, h, w) into the flattened (H, W) map it read."""

    indices: torch.Tensor
    size: torch.Size  # (H, W) of the map the pool read: the size max_unpool2d restores


def hands_pool_indices(body: nn.Module, channels: list[int]) -> bool:
    """Whether `body` downsamples only by 2x2 max pools and returns each pool's input plus the last pool's output."""
    layers = list(body.items()) if isinstance(body, nn.ModuleDict) else []
    returned = getattr(body, "return_layers", None)
    if not layers or not returned:
        return False
    names = [name for name, _ in layers]
    pools = [i for i, (_, layer) in enumerate(layers) if isinstance(layer, nn.MaxPool2d)]
    if not pools or any(not _halves(layers[i][1]) for i in pools) or _other_downsampling(layers, pools):
        return False
    taps = sorted(names.index(name) for name in returned)
    # each stage map is what a pool reads (the layer just before it); the deepest is the last pool's output
    return taps == [*(pool - 1 for pool in pools), pools[-1]] and len(channels) == len(pools) + 1


def _halves(pool: nn.MaxPool2d) -> bool:
    return pool.kernel_size in (2, (2, 2)) and pool.stride in (2, (2, 2)) and pool.padding in (0, (0, 0))


def _other_downsampling(layers: list[tuple[str, nn.Module]], pools: list[int]) -> bool:
    return any(_stride(layer) != 1 for i, (_, layer) in enumerate(layers) if i not in pools)


def _stride(layer: nn.Module) -> int:
    stride = getattr(layer, "stride", 1)
    return max(stride) if isinstance(stride, tuple) else int(stride)


def forward_with_pool_indices(
    body: nn.ModuleDict, images: torch.Tensor, maps: int | None = None
) -> tuple[list[torch.Tensor], list[PoolIndices]]:
    """The body's stage maps (fine to coarse), and each max pool's indices, shallow to deep; with `maps`, only the
    first `maps` stage maps (and the pools before them): the layers after those do not run."""
    features, pools, x = [], [], images
    for name, layer in body.items():
        if isinstance(layer, nn.MaxPool2d):
            size = x.shape[-2:]
            x, indices = F.max_pool2d(x, 2, 2, return_indices=True)  # (B, C, H/2, W/2), as the layer computes
            pools.append(PoolIndices(indices, size))
        else:
            x = layer(x)
        if name in body.return_layers:
            features.append(x)
            if len(features) == maps:
                break
    return features, pools


def layers_after(body: nn.ModuleDict, maps: int) -> list[nn.Module]:
    """The layers of `body` that run only after its first `maps` stage maps are made."""
    layers, seen = list(body.items()), 0
    for index, (name, _) in enumerate(layers):
        seen += name in body.return_layers
        if seen == maps:
            return [layer for _, layer in layers[index + 1 :]]
    return []
