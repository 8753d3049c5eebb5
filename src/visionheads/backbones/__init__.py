"""The shared backbone registry: every backbone returns stage feature maps and states channels and strides."""

from visionheads.backbones.registry import (
    Backbone,
    backbone_entry,
    create_backbone,
    list_backbones,
    register_backbone,
)
from visionheads.backbones.weights import WeightsInfo, load_state_dict_file

__all__ = [
    "Backbone",
    "WeightsInfo",
    "backbone_entry",
    "create_backbone",
    "list_backbones",
    "load_state_dict_file",
    "register_backbone",
]
