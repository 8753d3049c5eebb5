"""Data: sample dicts, adapters (folders, arrays, built-in datasets), transforms and loaders."""

from visionheads.data.folders import ClassFolders
from visionheads.data.samples import ArraySamples
from visionheads.data.sources import Source, list_datasets, register_dataset, resolve_source

__all__ = ["ArraySamples", "ClassFolders", "Source", "list_datasets", "register_dataset", "resolve_source"]
