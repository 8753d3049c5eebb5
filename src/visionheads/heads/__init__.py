"""Heads: modules that take a backbone's stage feature maps; built from channel widths and strides only."""

from visionheads.heads.autoencoder import AutoencoderHead, DenoisingHead, VAEHead
from visionheads.heads.dense import DeepLabV3PlusHead, FPNHead, SegNetLiteHead, UnetHead
from visionheads.heads.detection import FasterRCNNHead, MaskRCNNHead
from visionheads.heads.embedding import EmbeddingHead
from visionheads.heads.pooled import AngleHead, PooledHead, PooledLinear, PooledMLP
from visionheads.heads.segnet import SegNetHead

__all__ = [
    "AutoencoderHead",
    "DeepLabV3PlusHead",
    "DenoisingHead",
    "EmbeddingHead",
    "FasterRCNNHead",
    "FPNHead",
    "MaskRCNNHead",
    "AngleHead",
    "PooledHead",
    "PooledLinear",
    "PooledMLP",
    "SegNetHead",
    "SegNetLiteHead",
    "UnetHead",
    "VAEHead",
]
