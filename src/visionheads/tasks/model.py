"""The models tasks build: a head on a body's stage maps, and the one variant that unpools with the body's pooling
indices (SegNet). Every task model has `body` and `head` (so checkpoints hold `model.body.*` and `model.head.*`) and
says how its body trains (`set_body_trainable`), which the run's transfer strategies use."""

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
        self.body = body
        self.head = head

    def forward(self, images: torch.Tensor) -> Any:
        """images: float normalised, shape (B, in_chans, H, W). Returns: the head's outputs."""
        return self._head()(self.body(images))

    def set_body_trainable(self, trainable: bool) -> None:
        """Let the body's parameters train, or hold them (no gradients); transfer strategies call this."""
        self.body.requires_grad_(trainable)

    def _head(self) -> nn.Module:
        if self.head is None:
            raise ConfigError("the task has no head yet: pass num_classes (or class_names) or call fit() first")
        return self.head


class PoolIndexedModel(HeadOnBody):
    """A head that unpools with the body's max-pooling indices (SegNet): the body hands them over with its maps.

    The head may read fewer stage maps than the body makes (SegNet's `unpools`): the deeper layers then neither run
    nor train (held frozen, also when the body is unfrozen, so that DDP finds no parameter without a gradient).
    """

    def __init__(self, body: Backbone, head: nn.Module, *, maps_read: int, without_indices: str) -> None:
        if not body.hands_pool_indices:
            raise ConfigError(
                f"head {type(head).__name__} unpools with the encoder's max-pooling indices, which backbone "
                f"{body.name!r} cannot hand over (it does not downsample by 2x2 max pools only); use backbone "
                f"{' or '.join(repr(name) for name in POOL_INDEXED_BACKBONES)}, or head={without_indices!r}, "
                "which needs no indices"
            )
        super().__init__(body, head)
        self.maps_read = maps_read
        self.set_body_trainable(True)

    def forward(self, images: torch.Tensor) -> Any:
        """images: float normalised, shape (B, in_chans, H, W). Returns: the head's outputs."""
        return self._head()(*self.body.forward_with_pool_indices(images, self.maps_read))

    def set_body_trainable(self, trainable: bool) -> None:
        """As HeadOnBody's; the layers past the maps the head reads stay frozen either way."""
        super().set_body_trainable(trainable)
        for parameter in self.body.parameters_after(self.maps_read):
            parameter.requires_grad_(False)
