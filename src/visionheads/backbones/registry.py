"""The backbone registry: names to builders of feature extractors that state their channels and strides."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field

import torch
from torch import nn

from visionheads._registry import Registry
from visionheads.backbones.pooling import PoolIndices, forward_with_pool_indices, hands_pool_indices, layers_after
from visionheads.backbones.weights import NEUTRAL_MEAN, NEUTRAL_STD, WeightsInfo
from visionheads.errors import ConfigError


class Backbone(nn.Module):
    """A feature extractor returning one map per stage, fine to coarse, with stated `channels` and `strides`."""

    def __init__(
        self,
        body: nn.Module,
        *,
        name: str,
        channels: list[int],
        strides: list[int],
        in_chans: int,
        min_input_size: int = 32,
        input_size: int = 224,
        weights: WeightsInfo | None = None,
    ) -> None:
        super().__init__()
        if len(channels) != len(strides) or not channels:
            raise ConfigError(f"backbone {name!r}: channels {channels} and strides {strides} must pair up")
        if any(b < a for a, b in zip(strides, strides[1:], strict=False)):
            raise ConfigError(f"backbone {name!r}: strides {strides} must not decrease (fine to coarse)")
        self.body = body
        self.name = name
        self.channels = [int(c) for c in channels]
        self.strides = [int(s) for s in strides]
        self.in_chans = in_chans
        self.min_input_size = min_input_size
        self.input_size = weights.input_size if weights else input_size  # the default image side for tasks
        self.weights = weights
        self.standardize_images = False  # a task's config sets it (TaskConfig.standardize_images)
        self._check_contract()

    @property
    def hands_pool_indices(self) -> bool:
        """Whether the body downsamples only by 2x2 max pools and can hand their indices to a head (SegNet)."""
        return hands_pool_indices(self.body, self.channels)

    def forward_with_pool_indices(
        self, images: torch.Tensor, maps: int | None = None
    ) -> tuple[list[torch.Tensor], list[PoolIndices]]:
        """As forward, plus each max pool's indices (shallow to deep); ConfigError for bodies that cannot. With
        `maps`, the first `maps` stage maps only, and the layers after them do not run."""
        if not self.hands_pool_indices:
            raise ConfigError(f"backbone {self.name!r} does not downsample by max pooling only: no indices to hand")
        return forward_with_pool_indices(self.body, self._standardized(images), maps)

    def parameters_after(self, maps: int) -> list[nn.Parameter]:
        """The parameters of the layers that make no part of the first `maps` stage maps (pool-indexed bodies)."""
        return [p for layer in layers_after(self.body, maps) for p in layer.parameters()]

    def record_weights(self, info: WeightsInfo) -> None:
        """Say where the body's weights came from, and so which input mean, std and size suit them."""
        self.weights = info
        self.input_size = info.input_size

    @property
    def mean(self) -> tuple[float, ...]:
        """Per-channel input mean the weights expect (neutral 0.5 when trained from scratch)."""
        return _fit_channels(self.weights.mean if self.weights else NEUTRAL_MEAN, self.in_chans)

    @property
    def std(self) -> tuple[float, ...]:
        """Per-channel input std the weights expect."""
        return _fit_channels(self.weights.std if self.weights else NEUTRAL_STD, self.in_chans)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """images: float, shape (B, in_chans, H, W). Returns: one (B, C_i, H/s_i, W/s_i) map per stage."""
        return list(self.body(self._standardized(images)))

    def _standardized(self, images: torch.Tensor) -> torch.Tensor:
        if not self.standardize_images:
            return images
        # The statistics are constants to the gradient, so each output cell still depends on its receptive field
        # only: explain's heatmaps stay where the cells look, and the cost is the same as a BatchNorm's.
        mean = images.mean(dim=(2, 3), keepdim=True).detach()  # (B, C, 1, 1)
        spread = images.std(dim=(2, 3), keepdim=True).detach() + 1e-3
        return (images - mean) / spread

    def _check_contract(self) -> None:
        # A dry run at build time catches a wrong channel/stride declaration before any training starts.
        size = max(self.min_input_size, 64)
        was_training = self.training
        self.eval()
        with torch.no_grad():
            feats = self(torch.zeros(1, self.in_chans, size, size))
        self.train(was_training)
        got = [f.shape[1] for f in feats]
        if got != self.channels:
            raise ConfigError(f"backbone {self.name!r} declares channels {self.channels} but returns {got}")


def _fit_channels(values: tuple[float, ...], in_chans: int) -> tuple[float, ...]:
    if len(values) == in_chans:
        return tuple(values)
    mean_value = sum(values) / len(values)
    return tuple([mean_value] * in_chans)


BackboneBuilder = Callable[..., Backbone]


@dataclass(frozen=True)
class BackboneEntry:
    """How to build one registered backbone and which pretrained tags it knows."""

    build: BackboneBuilder  # build(*, in_chans, tag) -> Backbone; create_backbone loads local files itself
    tags: tuple[str, ...] = field(default_factory=tuple)
    description: str = ""
    pretrained: WeightsInfo | None = None  # how the architecture's published weights were trained (mean, std, size)
    network_keys: Callable[[], Collection[str]] | None = None  # tensors of the whole network the body leaves out


_BACKBONES: Registry[BackboneEntry] = Registry("backbone", "list_backbones() shows all")


def register_backbone(
    name: str,
    build: BackboneBuilder,
    *,
    tags: tuple[str, ...] = (),
    description: str = "",
    pretrained: WeightsInfo | None = None,
    network_keys: Callable[[], Collection[str]] | None = None,
) -> None:
    """Register `build(*, in_chans, tag) -> Backbone` under `name`; a taken name raises."""
    entry = BackboneEntry(build, tags, description, pretrained=pretrained, network_keys=network_keys)
    _BACKBONES.register(name, entry)


def list_backbones() -> list[str]:
    """Registered backbone names, sorted (any timm model also works as 'timm/<name>')."""
    return _BACKBONES.names()


def registered_entry(name: str) -> BackboneEntry:
    """The entry registered as `name` (ConfigError with suggestions when unknown)."""
    return _BACKBONES.get(name)
