"""Embedding head: the deepest map pooled, projected, and L2-normalised (a point on the unit sphere per image)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from visionheads.heads.pooled import PooledHead, _pool


class EmbeddingHead(PooledHead):
    """Average pool -> linear -> BN -> ReLU -> linear to `embedding_dim` -> L2 norm (both inputs of a pair share it).

    `hidden_dim=0` projects with one linear layer. Cosine similarity of two embeddings is their dot product.
    """

    def __init__(
        self,
        in_channels: list[int],
        strides: list[int],
        embedding_dim: int,
        *,
        hidden_dim: int = 256,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        del strides  # a pooled head is resolution-free
        self.pool, width = _pool(in_channels[-1], 1)
        if hidden_dim:
            layers: list[nn.Module] = [nn.Linear(width, hidden_dim), nn.BatchNorm1d(hidden_dim), nn.ReLU()]
            layers += [nn.Dropout(dropout), nn.Linear(hidden_dim, embedding_dim)]
        else:
            layers = [nn.Dropout(dropout), nn.Linear(width, embedding_dim)]
        self.classifier = _Normalised(nn.Sequential(*layers))  # the projection, to unit length: (B, embedding_dim)


class _Normalised(nn.Module):
    def __init__(self, projection: nn.Module) -> None:
        super().__init__()
        self.projection = projection

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.projection(pooled).float(), dim=1)
