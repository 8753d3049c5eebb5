"""Sample dicts and their checks: `image` is an HxWxC uint8 NumPy array, plus the task's targets."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from visionheads.errors import DataError

IGNORE_INDEX = 255  # semantic-mask value of "don't care" pixels (borders, unlabelled, crowds), as in VOC and Cityscapes


def paint_objects(canvas: np.ndarray, masks: Any, labels: Any) -> np.ndarray:
    """The class mask of instances: `canvas` (H, W) with each object's label over its mask's pixels (> 0), in order
    (later objects lie on top); painted in place and returned."""
    for mask, label in zip(masks, labels, strict=True):
        canvas[np.asarray(mask) > 0] = label
    return canvas


def layouts(channels: int) -> str:
    """How one image and a batch of images are laid out for a task with `channels` channels (for messages)."""
    if channels == 1:
        return "one image as HxW (or HxWx1), a batch as NxHxW (or NxHxWx1)"
    return f"one image as HxWx{channels}, a batch as NxHxWx{channels}"


def as_image(image: Any, where: str, channels: int | None = None) -> np.ndarray:
    """Return `image` as HxWxC uint8, or raise DataError naming `where` and the fix."""
    try:
        array = np.asarray(image)
    except (ValueError, TypeError) as error:  # ragged nested lists, objects numpy cannot make an array of
        raise DataError(f"{where}: image is not an array of numbers ({error})") from error
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3:
        raise DataError(f"{where}: image must be HxW or HxWxC, got shape {array.shape}")
    if array.shape[0] in (1, 3) and array.shape[2] not in (1, 3, 4):
        raise DataError(
            f"{where}: image of shape {array.shape} looks channels-first; give HxWxC (np.transpose(img, (1, 2, 0)))"
        )
    if 0 in array.shape:
        raise DataError(f"{where}: image of shape {array.shape} is empty; give {layouts(channels or 3)}")
    if array.dtype != np.uint8:
        array = _float_to_uint8(array, where)
    if channels is not None and array.shape[2] != channels:
        raise DataError(
            f"{where}: image has {array.shape[2]} channel(s) but the task expects {channels}; "
            f"convert the images or create the task with in_chans={array.shape[2]}"
        )
    return array


def _float_to_uint8(array: np.ndarray, where: str) -> np.ndarray:
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise DataError(f"{where}: image dtype {array.dtype} is not real numbers; give uint8 0-255 or floats in [0, 1]")
    if not np.isfinite(array).all():
        raise DataError(f"{where}: image holds NaN or infinite values")
    low, high = float(array.min()), float(array.max())
    if low >= 0 and high <= 1 and np.issubdtype(array.dtype, np.floating):
        return np.round(array * 255).astype(np.uint8)
    if low >= 0 and high <= 255:
        return np.round(array).astype(np.uint8)
    raise DataError(f"{where}: image values span [{low:g}, {high:g}]; give uint8 0-255 or floats in [0, 1]")


def change_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """Grey to RGB by repetition, RGB to grey by luminance; other counts are left for the checks to reject."""
    have = image.shape[2]
    if have == channels:
        return image
    if have == 1 and channels == 3:
        return np.repeat(image, 3, axis=2)
    if have in (3, 4) and channels == 1:
        grey = image[:, :, :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        return np.round(grey)[:, :, None].astype(np.uint8)
    if have == 4 and channels == 3:
        return image[:, :, :3]
    return image


class ArraySamples(Dataset):
    """In-memory samples: N images plus per-sample targets, e.g. `ArraySamples(x, label=y)`."""

    def __init__(self, images: np.ndarray | list, *, class_names: list[str] | None = None, **targets: Any) -> None:
        try:
            count = len(images)
        except TypeError as error:  # a number, a 0-d array
            raise DataError(f"arrays: images {_short(images)} are no list or (N, H, W[, C]) array") from error
        self.images = images
        self.targets = {key: _per_image(value, key, count) for key, value in targets.items()}
        self.class_names = class_names
        labels = self.targets.get("label")
        if labels is not None and (labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer)):
            raise DataError(
                f"arrays: labels of shape {labels.shape} and dtype {labels.dtype}; give one whole-number class index "
                "per image, shape (N,) (e.g. labels.astype(int))"
            )

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample: dict[str, Any] = {"image": self.images[index]}
        for key, value in self.targets.items():
            item = value[index]
            sample[key] = item.item() if np.ndim(item) == 0 else item
        return sample


def _per_image(value: Any, key: str, count: int) -> np.ndarray:
    """`value` as an array with one entry per image (an object array where the entries differ in shape)."""
    try:
        array = np.asarray(value)
    except ValueError:  # ragged: e.g. masks of images of different sizes
        array = np.empty(len(value), dtype=object)
        for index, item in enumerate(value):
            array[index] = item
    if array.ndim == 0 or len(array) != count:
        given = "one value" if array.ndim == 0 else f"{len(array)} values"
        raise DataError(f"arrays: {count} images but {given} of {key!r}; give one per image")
    return array


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def require_keys(sample: Any, keys: tuple[str, ...], where: str) -> Mapping[str, Any]:
    """Check that a sample is a dict holding `keys`; DataError names what is missing."""
    if not isinstance(sample, Mapping):
        raise DataError(
            f"{where}: a sample must be a dict with keys {list(keys)}, got {type(sample).__name__}; "
            "wrap your dataset so __getitem__ returns e.g. {'image': HxWxC uint8, 'label': int}"
        )
    missing = [key for key in keys if key not in sample]
    if missing:
        raise DataError(f"{where}: sample lacks key(s) {missing}; it has {sorted(sample)}")
    return sample
