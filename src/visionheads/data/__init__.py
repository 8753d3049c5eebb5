"""Data: sample dicts, adapters (folders, arrays, COCO, MNIST), built-in datasets, transforms and loaders.

Importing the package registers the built-in datasets (digits, rotated-digits, shapes, mnist).
"""

from visionheads.data import builtin  # noqa: F401  (registers the built-in datasets)
from visionheads.data.catalog import Source, list_datasets, register_dataset
from visionheads.data.coco import COCOSubset
from visionheads.data.folders import ClassFolders
from visionheads.data.instances import InstanceMasks
from visionheads.data.mnist import MNIST
from visionheads.data.rotation import Rotated, rotate_image
from visionheads.data.samples import ArraySamples
from visionheads.data.sources import resolve_source
from visionheads.data.yolo import YOLODataset

__all__ = [
    "COCOSubset",
    "InstanceMasks",
    "MNIST",
    "ArraySamples",
    "ClassFolders",
    "Rotated",
    "Source",
    "list_datasets",
    "register_dataset",
    "resolve_source",
    "rotate_image",
    "YOLODataset",
]
