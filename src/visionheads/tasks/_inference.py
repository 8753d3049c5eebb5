"""Evaluation and prediction of a trained task, on the GPU when there is one."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import torch
from tqdm.auto import tqdm

from visionheads.tasks._loading import check_first_sample, task_loader

if TYPE_CHECKING:
    from visionheads.tasks.base import Task


def inference_device() -> torch.device:
    """CUDA when available, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@torch.inference_mode()
def evaluate_task(task: Task, data: Any, *, batch_size: int) -> dict[str, float]:
    """Task.evaluate's body (see its docstring)."""
    source = task.resolve(data)
    task.check_data(source, fitting=False)
    check_first_sample(task, source)
    loader = task_loader(task, source, train=False, batch_size=batch_size, num_workers=0)
    device = inference_device()
    task.to(device).eval()
    metrics = task.new_metrics()
    loss_sum, batches = 0.0, 0
    for batch in tqdm(loader, desc=f"evaluate {source.description}", disable=not sys.stderr.isatty(), leave=False):
        batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        outputs = task(batch["image"])
        loss_sum += float(task.compute_loss(outputs, batch))
        batches += 1
        metrics.update(outputs, batch)
    task.last_evaluation, task.last_evaluated = metrics, source
    return {"loss": loss_sum / max(batches, 1), **metrics.compute()}


@torch.inference_mode()
def predict_task(task: Task, images: Any, *, batch_size: int) -> list[Any]:
    """Task.predict's body (see its docstring)."""
    arrays = task.image_arrays(images)
    pipeline = task.eval_transform()
    device = inference_device()
    task.to(device).eval()
    results: list[Any] = []
    for start in range(0, len(arrays), batch_size):
        tensors = torch.stack([pipeline(image=array)["image"] for array in arrays[start : start + batch_size]])
        results += task.decode(task(tensors.to(device)))
    return results
