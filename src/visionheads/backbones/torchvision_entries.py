"""Torchvision-only families, turned into stage feature extractors with torchvision's feature extraction."""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from timm.models import adapt_input_conv
from torchvision.models.feature_extraction import create_feature_extractor

from visionheads.backbones.registry import Backbone, register_backbone
from visionheads.backbones.weights import WeightsInfo, ensure_download_possible, weights_cached

# AlexNet nodes after each pooling step (and the ReLU before the first pool), fine to coarse.
_ALEXNET_NODES = {"features.1": "s4", "features.4": "s8", "features.7": "s16", "features.12": "s32"}
_ALEXNET_WEIGHTS = torchvision.models.AlexNet_Weights.IMAGENET1K_V1
ALEXNET_INFO = WeightsInfo(
    tag="imagenet",
    source=_ALEXNET_WEIGHTS.url,
    license="BSD-3-Clause (torchvision)",
    mean=tuple(_ALEXNET_WEIGHTS.transforms().mean),
    std=tuple(_ALEXNET_WEIGHTS.transforms().std),
    input_size=224,
)


class _DictToList(torch.nn.Module):
    def __init__(self, extractor: torch.nn.Module) -> None:
        super().__init__()
        self.extractor = extractor

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        return list(self.extractor(images).values())


def build_alexnet(*, in_chans: int, tag: str | None) -> Backbone:
    """AlexNet (Krizhevsky 2012, torchvision layout) as a 4-stage backbone."""
    weights = None
    if tag is not None:
        filename = Path(_ALEXNET_WEIGHTS.url).name
        ensure_download_possible(
            "download.pytorch.org",
            "pretrained AlexNet weights",
            weights_cached(ALEXNET_INFO),
            f"create_backbone('alexnet', weights='path/to/{filename}') (the file is at {_ALEXNET_WEIGHTS.url}).",
        )
        weights = _ALEXNET_WEIGHTS
    model = torchvision.models.alexnet(weights=weights)
    if in_chans != 3:
        stem = model.features[0]
        new_stem = torch.nn.Conv2d(in_chans, 64, kernel_size=11, stride=4, padding=2)
        with torch.no_grad():
            new_stem.weight.copy_(adapt_input_conv(in_chans, stem.weight))
            new_stem.bias.copy_(stem.bias)
        model.features[0] = new_stem
    extractor = create_feature_extractor(model, return_nodes=_ALEXNET_NODES)
    return Backbone(
        _DictToList(extractor),
        name="alexnet",
        channels=[64, 192, 384, 256],
        strides=[4, 8, 16, 32],
        in_chans=in_chans,
        min_input_size=63,
        weights=ALEXNET_INFO if tag is not None else None,
    )


def alexnet_network_keys() -> list[str]:
    """Tensor names of torchvision's whole AlexNet (classifier included), built on the meta device."""
    with torch.device("meta"):
        return list(torchvision.models.alexnet().state_dict())


register_backbone(
    "alexnet",
    build_alexnet,
    tags=("imagenet",),
    description="torchvision AlexNet, 4 stages",
    pretrained=ALEXNET_INFO,
    network_keys=alexnet_network_keys,
)
