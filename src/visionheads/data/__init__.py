"""Data: sample dicts, adapters (folders, arrays, built-in datasets), transforms and loaders."""

from visionheads.data.coco import COCOSubset
from visionheads.data.folders import ClassFolders
from visionheads.data.mnist import MNIST
from visionheads.data.rotation import Rotated, rotate_image
from visionheads.data.samples import ArraySamples
from visionheads.data.sources import Source, list_datasets, register_dataset, resolve_source

__all__ = [
    "COCOSubset",
    "MNIST",
    "ArraySamples",
    "ClassFolders",
    "Rotated",
    "Source",
    "list_datasets",
    "register_dataset",
    "resolve_source",
    "rotate_image",
]
