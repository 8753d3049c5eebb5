"""Test-time augmentation: a task's outputs averaged over views of the same images (a mirror; other scales where
the task can bring its outputs back to the input's size), for evaluate(tta=True) and predict(tta=True)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch.nn import functional as F

from visionheads.errors import ConfigError

if TYPE_CHECKING:
    from visionheads.runtime.protocol import RunnableTask


def check_tta(task: RunnableTask) -> None:
    """A ConfigError for a task without views to average."""
    if not task.tta_views:
        raise ConfigError(f"tta=True is for classification and segmentation; the {task.name} task has no views")


def averaged_outputs(task: RunnableTask, batch: dict[str, Any], outputs_of: Callable[[dict[str, Any]], Any]) -> Any:
    """The mean of `outputs_of` over the task's views (mirror, scale) of batch["image"] (B, C, H, W, normalised),
    each brought back to the unaugmented frame by the task's `undo_view`."""
    images = batch["image"]
    size = tuple(images.shape[-2:])
    total = None
    for mirrored, scale in task.tta_views:
        view = images.flip(-1) if mirrored else images
        if scale != 1:
            scaled = (round(size[0] * scale), round(size[1] * scale))
            view = F.interpolate(view, size=scaled, mode="bilinear", align_corners=False)
        outputs = task.undo_view(outputs_of({**batch, "image": view.contiguous()}), mirrored=mirrored, size=size)
        total = outputs.float() if total is None else total + outputs.float()
    assert isinstance(total, torch.Tensor)
    return total / len(task.tta_views)
