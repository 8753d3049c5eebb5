"""Sampling labelled data for metric learning: P x K batches, balanced pairs, triplets; all seeded."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Sampler, Subset

from visionheads.errors import DataError


def labels_of(dataset: Any) -> np.ndarray:
    """The `label` of every sample (N,), read from the dataset's arrays where it has them, else sample by sample."""
    if isinstance(dataset, Subset):
        return labels_of(dataset.dataset)[np.asarray(dataset.indices)]
    targets = getattr(dataset, "targets", None)
    if isinstance(targets, dict) and "label" in targets:
        return np.asarray(targets["label"]).astype(np.int64)
    labels = getattr(dataset, "labels", None)
    if labels is not None and len(labels) == len(dataset):
        return np.asarray(labels).astype(np.int64)
    return np.asarray([int(dataset[i]["label"]) for i in range(len(dataset))], dtype=np.int64)


class PKBatchSampler(Sampler[list[int]]):
    """Batches of P classes x K images each (with replacement where a class has fewer than K), for mining pairs and
    triplets inside the batch. Draws from `generator` (reseeded per epoch by the task); len(labels) // (P*K) batches.
    """

    def __init__(self, labels: np.ndarray, classes_per_batch: int, per_class: int, generator: torch.Generator):
        self.by_class = [np.flatnonzero(labels == c) for c in np.unique(labels)]
        if len(self.by_class) < 2:
            raise DataError("metric learning needs images of two classes or more")
        self.classes_per_batch = min(classes_per_batch, len(self.by_class))
        self.per_class = per_class
        self.generator = generator
        self.batches = max(1, len(labels) // (self.classes_per_batch * per_class))

    def __len__(self) -> int:
        return self.batches

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,), generator=self.generator)))
        for _ in range(self.batches):
            batch: list[int] = []
            for c in rng.choice(len(self.by_class), self.classes_per_batch, replace=False):
                members = self.by_class[c]
                batch += rng.choice(members, self.per_class, replace=len(members) < self.per_class).tolist()
            yield batch


def balanced_pairs(labels: np.ndarray, count: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`count` index pairs (count, 2), half of one class and half of two different ones, and whether each is same."""
    rng = np.random.default_rng(seed)
    by_class = {c: np.flatnonzero(labels == c) for c in np.unique(labels)}
    classes = [c for c, members in by_class.items() if len(members) >= 2]
    if not classes or len(by_class) < 2:
        raise DataError("pairs need a class with two images or more, and two classes or more")
    pairs, same = [], []
    for index in range(count):
        if index % 2 == 0:
            members = by_class[classes[rng.integers(len(classes))]]
            pairs.append(rng.choice(members, 2, replace=False))
        else:
            first, second = rng.choice(list(by_class), 2, replace=False)
            pairs.append([rng.choice(by_class[first]), rng.choice(by_class[second])])
        same.append(index % 2 == 0)
    return np.asarray(pairs, dtype=np.int64), np.asarray(same)


def triplets(labels: np.ndarray, count: int, *, seed: int = 0) -> np.ndarray:
    """`count` seeded (anchor, positive, negative) index triplets (count, 3)."""
    anchors_positives, _ = balanced_pairs(labels, 2 * count, seed=seed)
    rng = np.random.default_rng(seed + 1)
    rows = []
    for anchor, positive in anchors_positives[::2]:
        others = np.flatnonzero(labels != labels[anchor])
        rows.append([anchor, positive, rng.choice(others)])
    return np.asarray(rows, dtype=np.int64)
