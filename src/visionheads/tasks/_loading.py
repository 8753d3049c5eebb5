"""From a task's Source to batches: each sample checked, augmented and made tensors, naming it in every error."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from visionheads.data.pipeline import make_loader
from visionheads.data.samples import as_image, require_keys
from visionheads.data.sources import Source

if TYPE_CHECKING:
    from visionheads.tasks.base import Task


def sample_transform(task: Task, pipeline: Any, description: str) -> Callable[[dict[str, Any], int], dict]:
    """Per-sample check + augmentation + tensor conversion, naming the sample in every error."""

    def transform(sample: dict[str, Any], index: int) -> dict[str, torch.Tensor]:
        where = f"{description}[{index}]"
        sample = dict(require_keys(sample, task.sample_keys(), where))
        sample["image"] = as_image(sample["image"], f"{where}['image']", channels=task.in_chans)
        return task.to_tensors(pipeline, sample, where)

    return transform


def check_first_sample(task: Task, source: Source | None) -> None:
    """Run the first sample through the eval pipeline, so bad data fails before training, not at epoch 3."""
    if source is not None:
        sample_transform(task, task.eval_transform(), source.description)(source.dataset[0], 0)


def task_loader(
    task: Task, source: Source, *, train: bool, batch_size: int, num_workers: int
) -> torch.utils.data.DataLoader:
    """Batches of `source` through the task's train (shuffled) or eval pipeline."""
    pipeline = task.train_transform(source) if train else task.eval_transform()
    return make_loader(
        source.dataset,
        sample_transform(task, pipeline, source.description),
        batch_size=batch_size,
        shuffle=train,
        num_workers=num_workers,
        drop_last=train and len(source.dataset) > batch_size,  # no 1-sample batch to upset BatchNorm
    )
