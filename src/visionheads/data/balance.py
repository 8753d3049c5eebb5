"""Class weights from training labels: SegNet's median-frequency balancing (Eigen and Fergus, 2015), for losses
that would otherwise let the large classes (road, sky) drown the thin ones (poles, signs)."""

from __future__ import annotations

from typing import Any

import numpy as np

from visionheads.data.samples import IGNORE_INDEX
from visionheads.data.sampling import labels_of


def median_frequency_weights(counts: np.ndarray, exposure: np.ndarray) -> np.ndarray:
    """Weights (K,): median(freq) / freq_c with freq_c = counts_c / exposure_c.

    counts: (K,) pixels (or images) of class c; exposure: (K,) all pixels of the images in which c occurs (for
    image labels, all images). A class that never occurs gets weight 1: no target asks for it in training.
    """
    counts, exposure = np.asarray(counts, dtype=np.float64), np.asarray(exposure, dtype=np.float64)
    seen = counts > 0
    weights = np.ones(len(counts))
    if seen.any():
        frequency = counts[seen] / exposure[seen]
        weights[seen] = np.median(frequency) / frequency
    return weights


def mask_class_counts(dataset: Any, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Per class (K,): its labelled pixels, and the labelled pixels of the images it occurs in (void left out)."""
    counts, exposure = np.zeros(num_classes), np.zeros(num_classes)
    for index in range(len(dataset)):
        mask = np.asarray(dataset[index]["mask"])
        labelled = mask[(mask != IGNORE_INDEX) & (mask >= 0) & (mask < num_classes)]
        found = np.bincount(labelled.ravel().astype(np.int64), minlength=num_classes)
        counts += found
        exposure[found > 0] += labelled.size
    return counts, exposure


def label_class_counts(dataset: Any, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Per class (K,): its images, and all images (every image could hold any class)."""
    labels = labels_of(dataset)
    labels = labels[(labels >= 0) & (labels < num_classes)]
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    return counts, np.full(num_classes, float(len(labels)))
