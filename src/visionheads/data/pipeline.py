"""From sample dicts to batches: apply a task's per-sample transform, then collate."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

SampleTransform = Callable[[dict[str, Any], int], dict[str, torch.Tensor]]


class TransformedDataset(Dataset):
    """Applies `transform(sample, index)` to each sample of `dataset`."""

    def __init__(self, dataset: Dataset, transform: SampleTransform) -> None:
        self.dataset = dataset
        self.transform = transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.transform(self.dataset[index], index)


def make_loader(
    dataset: Dataset,
    transform: SampleTransform,
    *,
    batch_size: int,
    shuffle: bool,
    num_workers: int = 0,
    collate_fn: Callable | None = None,
    drop_last: bool = False,
) -> DataLoader:
    """A DataLoader over `dataset` with `transform` applied per sample."""
    return DataLoader(
        TransformedDataset(dataset, transform),
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        collate_fn=collate_fn,
        drop_last=drop_last,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=num_workers > 0,
    )
