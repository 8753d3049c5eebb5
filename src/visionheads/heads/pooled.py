"""Heads on the globally pooled deepest feature map: a linear layer, a small MLP, or (cos, sin) of an angle."""

from __future__ import annotations

import torch
from torch import nn


def _pool(channels: int, pool_size: int) -> tuple[nn.Module, int]:
    """Average pooling to pool_size x pool_size cells, flattened; and the width it hands on."""
    return nn.Sequential(nn.AdaptiveAvgPool2d(pool_size), nn.Flatten(1)), channels * pool_size * pool_size


def _hidden_layer_classifier(features: int, hidden: int, dropout: float, out_features: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(features, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(hidden, out_features)
    )


class PooledHead(nn.Module):
    """A head on the deepest map pooled to a vector: `classifier(pooled(features))`. The two halves are declared
    because strategy="features" uses them apart: it caches `pooled` of a frozen body once and trains `classifier`."""

    pool: nn.Module
    classifier: nn.Module

    def pooled(self, features: list[torch.Tensor]) -> torch.Tensor:
        """features: stage maps, fine to coarse. Returns: the deepest map averaged, (B, C * pool_size**2)."""
        return self.pool(features[-1])

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        """features: stage maps, fine to coarse. Returns: (B, out_features)."""
        return self.classifier(self.pooled(features))


class PooledLinear(PooledHead):
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


class PooledMLP(PooledHead):
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
        self.classifier = _hidden_layer_classifier(features, hidden, dropout, out_features)


class AngleHead(PooledLinear):
    """(cos θ, sin θ) from the deepest map pooled to a pool_size x pool_size grid, through a hidden layer if hidden > 0.

    A grid keeps where the strokes lie (on MNIST it did not lower the error: docs/regression.md); with the defaults
    this is `PooledLinear`, so angle checkpoints saved before it load.
    """

    def __init__(
        self,
        in_channels: list[int],
        strides: list[int],
        out_features: int,
        *,
        pool_size: int = 1,
        hidden: int = 0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(in_channels, strides, out_features, dropout=dropout, pool_size=pool_size)
        if hidden:  # the layers (and state-dict keys) of PooledMLP
            self.classifier = _hidden_layer_classifier(self.classifier[-1].in_features, hidden, dropout, out_features)
