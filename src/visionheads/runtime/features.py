"""strategy="features": a frozen body's pooled features computed once, then batches of them for the head alone."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import torch
from torch.utils.data import DataLoader, default_collate
from tqdm.auto import tqdm

from visionheads.data.catalog import Source
from visionheads.data.pipeline import EpochClock, TensorSamples, make_loader
from visionheads.engine import inference_device
from visionheads.errors import ConfigError
from visionheads.runtime.loaders import data_loader

if TYPE_CHECKING:
    from visionheads.runtime.protocol import RunnableTask

FEATURES = "features"  # the batch key of cached body features; the task's model_outputs runs the head alone on them


def feature_loader(
    task: RunnableTask, source: Source, *, train: bool, batch_size: int = 32, clock: EpochClock | None = None
) -> DataLoader:
    """Batches of the body's pooled features of `source` (the body run once, eval pipeline) with their targets;
    training batches shuffled by `clock`'s generator."""
    head = task.pooled_head
    if head is None:
        raise ConfigError(
            f"strategy='features' needs a pooled head (e.g. linear, mlp), not {task.config.head!r}; "
            "strategy='freeze' also trains the head alone"
        )
    device = inference_device()
    task.to(device).eval()
    features, targets = [], []
    with torch.no_grad():  # not inference_mode: the cached tensors are inputs of training steps later
        batches = data_loader(task, source, train=False, batch_size=batch_size, num_workers=0)
        for batch in tqdm(batches, desc=f"features of {source.description}", disable=not sys.stderr.isatty()):
            images = task.model_inputs(batch["image"].to(device))
            features.append(head.pooled(task.backbone(images)).float().cpu())
            targets.append({key: value for key, value in batch.items() if key != "image"})
    tensors = {FEATURES: torch.cat(features)} | {key: torch.cat([t[key] for t in targets]) for key in targets[0]}
    clock = clock or EpochClock(task.config.seed)
    return make_loader(
        TensorSamples(tensors),
        batch_size=batch_size,
        collate_fn=default_collate,
        seed=task.config.seed,
        shuffle=clock.generator if train else None,
        drop_last=train and len(tensors[FEATURES]) > batch_size,
    )
