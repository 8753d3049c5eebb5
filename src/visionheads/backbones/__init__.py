"""The shared backbone registry: every backbone returns stage feature maps and states channels and strides.

Importing the package registers the built-in entries (small CNNs, timm bodies, torchvision's AlexNet);
`describe_backbones` and `format_zoo` tabulate them (parameters, FLOPs, stages, weights).
"""

from visionheads.backbones import small, timm_entries, torchvision_entries  # noqa: F401  (they register themselves)
from visionheads.backbones.create import backbone_entry, create_backbone
from visionheads.backbones.pooling import POOL_INDEXED_BACKBONES, PoolIndices
from visionheads.backbones.registry import Backbone, list_backbones, register_backbone
from visionheads.backbones.weights import WeightsInfo, load_state_dict_file, weights_cached
from visionheads.backbones.zoo import ZooRow, describe_backbone, describe_backbones, format_zoo

__all__ = [
    "Backbone",
    "POOL_INDEXED_BACKBONES",
    "PoolIndices",
    "WeightsInfo",
    "ZooRow",
    "backbone_entry",
    "create_backbone",
    "describe_backbone",
    "describe_backbones",
    "format_zoo",
    "list_backbones",
    "load_state_dict_file",
    "register_backbone",
    "weights_cached",
]
