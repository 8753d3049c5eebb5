"""The contract every task honours, checked the same way in every task's suite.

`check_training_step` runs tiny samples through the task's own data path (to_tensors, collate) into one training
step and one evaluation step: the losses are finite, every trainable parameter gets a finite gradient (a parameter
that gets none is trained by weight decay alone: a bug), the metrics come out as plain floats and predictions come
back one per image.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

import visionheads as vh


def input_size(body: vh.backbones.Backbone) -> int:
    """The side of the tiny test images: 64 px, or more where a body needs it (inception)."""
    return max(64, body.min_input_size)


def check_training_step(task: vh.Task, samples: list[dict[str, Any]]) -> dict[str, float]:
    """One training and one evaluation step of `task` on `samples` (batch of 2, CPU); returns the metrics."""
    assert len(samples) >= 2, "batch 2 or more, so that BatchNorm trains"
    pipeline = task.eval_transform()
    # As TransformedDataset hands them over: with their position in the data under "index".
    batch = task.collate(
        [task.to_tensors(pipeline, {"index": i, **sample}, f"samples[{i}]") for i, sample in enumerate(samples)]
    )
    assert all(image.dtype == torch.uint8 for image in batch["image"])  # the pipelines give uint8 images
    batch["image"] = task.model_inputs(batch["image"])  # what on_after_batch_transfer does in a fit
    task.train()
    task.zero_grad(set_to_none=True)
    losses = task.training_losses(batch, 0)
    total = torch.stack(list(losses.values())).sum()
    assert torch.isfinite(total), f"loss terms {losses}"
    total.backward()
    trainable = [(name, p) for name, p in task.named_parameters() if p.requires_grad]
    assert trainable
    without = [name for name, p in trainable if p.grad is None]
    assert not without, f"{len(without)} trainable parameter(s) got no gradient, e.g. {without[:5]}"
    not_finite = [name for name, p in trainable if not torch.isfinite(p.grad).all()]
    assert not not_finite, f"non-finite gradients in {not_finite[:5]}"
    task.zero_grad(set_to_none=True)

    task.eval()
    metrics = task.new_metrics(None)  # no source: the metrics judge the batches
    with torch.no_grad():
        outputs = task.evaluation_outputs(batch)
        task.update_metrics(metrics, outputs, batch)
        values = task.metric_values(metrics.compute())
        decoded = task.decode(outputs, [tuple(s["image"].shape[:2]) for s in samples])
    assert values and all(isinstance(v, float) for v in values.values())
    assert len(decoded) == len(samples)
    return values


def noise_images(count: int, size: int, channels: int = 3, seed: int = 0) -> list[np.ndarray]:
    """Seeded noise images, HxWxC uint8."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 255, (size, size, channels), dtype=np.uint8) for _ in range(count)]
