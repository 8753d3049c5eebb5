"""A task's data as batches: each sample checked and put through the task's pipeline, collated by the task; in
training shuffled (or batched by the task's sampler) and augmented with draws seeded per epoch by the run's clock."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch.utils.data import DataLoader

from visionheads.data.catalog import Source
from visionheads.data.pipeline import EpochClock, TransformedDataset, make_loader
from visionheads.engine import default_workers
from visionheads.errors import whole_number

if TYPE_CHECKING:
    from visionheads.runtime.protocol import RunnableTask


def data_loader(
    task: RunnableTask,
    source: Source,
    *,
    train: bool,
    batch_size: int = 32,
    num_workers: int | None = None,
    clock: EpochClock | None = None,
) -> DataLoader:
    """Batches of `source` through the task's train or eval pipeline. A training loader shuffles with `clock`'s
    generator (the run's; a fresh one seeded from the task's seed when None)."""
    batch_size = whole_number("batch_size", batch_size)
    if train and clock is None:
        clock = EpochClock(task.config.seed)
    pipeline = task.train_transform(source) if train else task.eval_transform()
    return make_loader(
        transformed(task, source, pipeline, clock=clock if train else None),
        batch_size=batch_size,
        collate_fn=task.collate,
        seed=task.config.seed,
        shuffle=clock.generator if train else None,
        num_workers=default_workers() if num_workers is None else num_workers,
        drop_last=train and len(source.dataset) > batch_size,  # no 1-sample batch to upset BatchNorm
        batch_sampler=task.train_batch_sampler(source, batch_size, clock.generator) if train else None,
    )


def transformed(
    task: RunnableTask, source: Source, pipeline: Any, clock: EpochClock | None = None
) -> TransformedDataset:
    """The samples of `source`, checked (the task's keys, the image) and through `pipeline` to the task's tensors."""
    return TransformedDataset(
        source.dataset, pipeline=pipeline, to_tensors=task.to_tensors, keys=task.sample_keys(),
        channels=task.config.in_chans, description=source.description, clock=clock,
    )  # fmt: skip
