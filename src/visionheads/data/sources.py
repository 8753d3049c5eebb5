"""Turning what users pass (a built-in name, a path, a Dataset, arrays) into a Dataset of sample dicts."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from visionheads.data.catalog import Source, is_builtin, list_datasets, resolve_builtin
from visionheads.data.coco import COCOSubset
from visionheads.data.samples import ArraySamples, layouts
from visionheads.errors import DataError


def resolve_source(
    data: Any,
    *,
    channels: int,
    target_key: str,
    from_path: Callable[[Path, int], Source],
) -> Source:
    """Resolve `data` (built-in name, path, Dataset, (images, targets), dict of arrays, COCO dict) to a Source."""
    if isinstance(data, Source):
        return data
    if is_builtin(data):
        return resolve_builtin(data, channels)
    if isinstance(data, (str, Path)):
        path = Path(data).expanduser()
        if not path.exists():
            raise DataError(f"{data}: neither a built-in dataset ({', '.join(list_datasets())}) nor an existing path")
        return from_path(path, channels)
    if isinstance(data, np.ndarray):  # images alone, (N, H, W[, C]): for unsupervised tasks
        return Source(ArraySamples(_image_array(data, channels)), "arrays")
    if isinstance(data, tuple) and len(data) == 2:
        images, targets = data
        return Source(ArraySamples(_image_array(images, channels), **{target_key: targets}), "arrays")
    if isinstance(data, dict) and "coco" in data:
        return coco_source(data, channels)
    if isinstance(data, dict) and "image" in data:
        arrays = dict(data)
        return Source(ArraySamples(_image_array(arrays.pop("image"), channels), **arrays), "arrays")
    if isinstance(data, Dataset) or (hasattr(data, "__getitem__") and hasattr(data, "__len__")):
        return Source(data, type(data).__name__, class_names=getattr(data, "class_names", None))
    raise DataError(
        f"cannot use {type(data).__name__} as data; give a built-in name, a path, a Dataset of sample dicts, "
        f"or arrays as (images, {target_key}s)"
    )


COCO_KEYS = {
    "coco": "annotations",
    "images": "images_root",
    "categories": "categories",
    "max_images": "max_images",
    "negatives": "negatives",
    "split": "split",
    "fractions": "fractions",
    "split_seed": "split_seed",
}


def coco_source(spec: dict[str, Any], channels: int) -> Source:
    """`{"coco": JSON, "images": DIR, "categories": [...], "max_images": N}` (as in a recipe) to a COCO Source."""
    unknown = sorted(set(spec) - set(COCO_KEYS))
    if unknown:
        raise DataError(f"COCO data {spec}: unknown key(s) {unknown}; use {sorted(COCO_KEYS)}")
    arguments = {COCO_KEYS[key]: value for key, value in spec.items() if value is not None}
    dataset = COCOSubset(**arguments, channels=channels)
    chosen = f":{','.join(dataset.category_names)}" if spec.get("categories") else ""
    limit = f"[:{spec['max_images']}]" if spec.get("max_images") else ""
    part = f"@{spec['split']}" if spec.get("split") else ""
    description = f"coco:{dataset.annotations}{chosen}{part}{limit}"
    return Source(dataset, description, class_names=dataset.class_names)


def _image_array(images: Any, channels: int) -> Any:
    """An array of images as (N, H, W, C): (N, H, W) is N greyscale images; other shapes are a DataError."""
    if not isinstance(images, np.ndarray) or (images.ndim == 1 and images.dtype == object):
        return images  # a list of images: each is checked as a sample
    if images.ndim not in (3, 4):
        raise DataError(f"arrays: images of shape {images.shape}; give a batch of images as NxHxWxC (or NxHxW)")
    if images.ndim == 4:
        return images
    if channels != 1:
        raise DataError(
            f"arrays: images of shape {images.shape} read as {len(images)} greyscale images (NxHxW), but the task "
            f"expects {channels} channels; give {layouts(channels)}"
        )
    return images[:, :, :, None]  # (N, H, W) greyscale -> (N, H, W, 1)
