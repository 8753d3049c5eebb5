"""Heads on the globally pooled deepest feature map: a linear layer, or a small MLP."""

from __future__ import annotations

import torch
from torch import nn


class PooledLinear(nn.Module):
    """Global average pool -> dropout -> linear (Keras applications' `include_top=False` + Dense)."""

    def __init__(self, in_channels: list[int], strides: list[int], out_features: int, *, dropout: float = 0.0) -> None:
        super().__init__()
        del strides  # a pooled head is resolution-free
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(in_channels[-1], out_features))

    def pooled(self, features: list[torch.Tensor]) -> torch.Tensor:
        """features: stage maps, fine to coarse. Returns: the deepest map averaged, (B, C)."""
        return self.pool(features[-1])

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        """features: stage maps, fine to coarse. Returns: (B, out_features)."""
        return self.classifier(self.pooled(features))


class PooledMLP(nn.Module):
    """Global average pool -> linear -> ReLU -> dropout -> linear."""

    def __init__(
        self,
        in_channels: list[int],
        strides: list[int],
        out_features: int,
        *,
        hidden: int = 256,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        del strides
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
        self.classifier = nn.Sequential(
            nn.Linear(in_channels[-1], hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, out_features),
        )

    pooled = PooledLinear.pooled

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        """features: stage maps, fine to coarse. Returns: (B, out_features)."""
        return self.classifier(self.pooled(features))
