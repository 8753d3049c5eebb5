"""The shared backbone registry: every backbone returns stage feature maps and states channels and strides.

Importing the package registers the built-in entries (small CNNs, timm bodies, torchvision's AlexNet).
"""

from visionheads.backbones import small, timm_entries, torchvision_entries  # noqa: F401  (they register themselves)
from visionheads.backbones.create import backbone_entry, create_backbone
from visionheads.backbones.pooling import POOL_INDEXED_BACKBONES, PoolIndices
from visionheads.backbones.registry import Backbone, list_backbones, register_backbone
from visionheads.backbones.weights import WeightsInfo, load_state_dict_file

__all__ = [
    "Backbone",
    "POOL_INDEXED_BACKBONES",
    "PoolIndices",
    "WeightsInfo",
    "backbone_entry",
    "create_backbone",
    "list_backbones",
    "load_state_dict_file",
    "register_backbone",
]
