"""Built-in `digits`: scikit-learn's 1,797 real 8x8 handwritten digits, upscaled, in seeded stratified splits."""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from visionheads.data.samples import ArraySamples
from visionheads.errors import DataError

SPLITS = ("train", "val", "test")
DIGIT_NAMES = [str(d) for d in range(10)]


@lru_cache(maxsize=8)
def digits_arrays(split: str = "train", *, size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, size, size) uint8 and labels (N,) of one split: 60% train, 20% val, 20% test."""
    if split not in SPLITS:
        raise DataError(f"digits: unknown split {split!r}; use one of {SPLITS}")
    data = load_digits()
    images = np.round(data.images * (255.0 / 16.0)).astype(np.uint8)  # values 0..16 -> 0..255
    indices = np.arange(len(images))
    train, rest = train_test_split(indices, test_size=0.4, stratify=data.target, random_state=seed)
    val, test = train_test_split(rest, test_size=0.5, stratify=data.target[rest], random_state=seed)
    chosen = {"train": train, "val": val, "test": test}[split]
    upscaled = np.stack([cv2.resize(images[i], (size, size), interpolation=cv2.INTER_LINEAR) for i in chosen])
    upscaled.setflags(write=False)
    return upscaled, data.target[chosen].astype(np.int64)


def digits(split: str = "train", *, size: int = 32, seed: int = 0, classes: list[int] | None = None) -> ArraySamples:
    """The `digits` split as sample dicts with `image` (size x size x 1) and `label`; only `classes` (digits,
    relabelled 0..k-1 in that order) where given."""
    images, labels = digits_arrays(split, size=size, seed=seed)
    if classes is None:
        return ArraySamples(images[:, :, :, None], label=labels, class_names=DIGIT_NAMES)
    keep = np.isin(labels, classes)
    relabel = np.full(10, -1)
    relabel[classes] = np.arange(len(classes))
    names = [DIGIT_NAMES[c] for c in classes]
    return ArraySamples(images[keep][:, :, :, None], label=relabel[labels[keep]], class_names=names)
