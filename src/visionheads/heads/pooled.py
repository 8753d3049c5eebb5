"""Heads on the globally pooled deepest feature map: a linear layer, or a small MLP."""

from __future__ import annotations

import torch
from torch import nn


def _pool(channels: int, pool_size: int) -> tuple[nn.Module, int]:
    """Average pooling to pool_size x pool_size cells, flattened; and the width it hands on."""
    return nn.Sequential(nn.AdaptiveAvgPool2d(pool_size), nn.Flatten(1)), channels * pool_size * pool_size


class PooledLinear(nn.Module):
    """Average pool to pool_size x pool_size -> dropout -> linear (pool_size=1: Keras' global pooling + Dense).

    A pool_size above 1 keeps a coarse layout of where features are, which tasks about geometry (angles) use.
    """

    def __init__(
        self,
        in_channels: list[int],
        strides: list[int],
        out_features: int,
        *,
        dropout: float = 0.0,
        pool_size: int = 1,
    ) -> None:
        super().__init__()
        del strides  # a pooled head is resolution-free
        self.pool, features = _pool(in_channels[-1], pool_size)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(features, out_features))

    def pooled(self, features: list[torch.Tensor]) -> torch.Tensor:
        """features: stage maps, fine to coarse. Returns: the deepest map averaged, (B, C * pool_size**2)."""
        return self.pool(features[-1])

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        """features: stage maps, fine to coarse. Returns: (B, out_features)."""
        return self.classifier(self.pooled(features))


class PooledMLP(nn.Module):
    """Average pool to pool_size x pool_size -> linear -> ReLU -> dropout -> linear."""

    def __init__(
        self,
        in_channels: list[int],
        strides: list[int],
        out_features: int,
        *,
        hidden: int = 256,
        dropout: float = 0.2,
        pool_size: int = 1,
    ) -> None:
        super().__init__()
        del strides
        self.pool, features = _pool(in_channels[-1], pool_size)
        self.classifier = nn.Sequential(
            nn.Linear(features, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, out_features),
        )

    pooled = PooledLinear.pooled

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        """features: stage maps, fine to coarse. Returns: (B, out_features)."""
        return self.classifier(self.pooled(features))
