"""The model of most tasks: a head on a body's stage maps, with what heads that unpool (SegNet) need of the body."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from visionheads.backbones import POOL_INDEXED_BACKBONES, Backbone
from visionheads.errors import ConfigError


class HeadOnBody(nn.Module):
    """The model of most tasks: a head on the body's stage maps (`head(body(images))`)."""

    def __init__(self, body: Backbone, head: nn.Module | None) -> None:
        super().__init__()
        self.needs_pool_indices = bool(getattr(head, "needs_pool_indices", False))  # SegNet's head takes them
        if self.needs_pool_indices and not body.hands_pool_indices:
            raise ConfigError(
                f"head {type(head).__name__} unpools with the encoder's max-pooling indices, which backbone "
                f"{body.name!r} cannot hand over (it does not downsample by 2x2 max pools only); use backbone "
                f"{' or '.join(repr(name) for name in POOL_INDEXED_BACKBONES)}, or head="
                f"{getattr(head, 'without_indices', 'another head')!r}, which needs no indices"
            )
        self.body = body
        self.head = head
        # A head may read fewer stage maps than the body makes (SegNet's `unpools`): the deeper layers do not run,
        # and their parameters train not at all (held frozen, so that DDP finds no parameter without a gradient).
        self.maps_read: int | None = getattr(head, "maps_read", None)
        self.freeze_unread()

    def freeze_unread(self) -> None:
        """Hold frozen the body's layers past the maps the head reads (none for most heads)."""
        if self.maps_read is not None:
            for parameter in self.body.parameters_after(self.maps_read):
                parameter.requires_grad_(False)

    def forward(self, images: torch.Tensor) -> Any:
        """images: float normalised, shape (B, in_chans, H, W). Returns: the head's outputs."""
        if self.head is None:
            raise ConfigError("the task has no head yet: pass num_classes (or class_names) or call fit() first")
        if self.needs_pool_indices:
            return self.head(*self.body.forward_with_pool_indices(images, self.maps_read))
        return self.head(self.body(images))
