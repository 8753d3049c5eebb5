"""Inference without a Trainer: images (files, a folder, arrays) read batch by batch through the task's eval
pipeline onto the inference device, the model in channels-last layout (and through torch.compile when asked)."""

from __future__ import annotations

import contextlib
import sys
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from visionheads.data.images import as_image_list, read_image
from visionheads.data.samples import as_image
from visionheads.engine import inference_device
from visionheads.errors import DataError, whole_number
from visionheads.runtime.tta import averaged_outputs

if TYPE_CHECKING:
    from visionheads.runtime.protocol import RunnableTask

# task -> {torch.compile backend: (its model, that model compiled)}: compiled on first use, kept while the task lives
# (keyed by the task, not the model, which the compiled model holds on to)
_COMPILED: weakref.WeakKeyDictionary[Any, dict[str, tuple[nn.Module, nn.Module]]] = weakref.WeakKeyDictionary()


def predictions(
    task: RunnableTask,
    images: Any,
    *,
    batch_size: int = 64,
    compile: bool | str = False,
    tta: bool = False,
    progress: bool | None = None,
) -> list[Any]:
    """The task's decoded result for each image (see Task.predict); with `tta`, of its averaged views; a progress
    bar over the batches where `progress` says (None: on a terminal, for more than one batch). An image file that
    cannot be read has its DataError in its place (said on stderr) unless none can be read: then that is raised."""
    results: list[Any] = []
    unreadable: list[tuple[int, DataError]] = []
    with fast_inference(task, compile=compile), torch.inference_mode():
        batches = image_batches(task, images, batch_size=batch_size, progress="predict", show=progress,
                                unreadable=unreadable)  # fmt: skip
        for batch, sizes in batches:
            outputs = averaged_outputs(task, batch, task.prediction_outputs) if tta else task.prediction_outputs(batch)
            results += task.decode(outputs, sizes)
    if unreadable and not results:
        raise unreadable[0][1]
    for index, error in unreadable:  # in order: each lands at its image's place
        results.insert(index, error)
    if unreadable:
        print(f"predict: {len(unreadable)} of {len(results)} images could not be read; their results are the errors:",
              *(f"  {error}" for _, error in unreadable[:20]), sep="\n", file=sys.stderr)  # fmt: skip
    return results


@contextlib.contextmanager
def fast_inference(task: RunnableTask, *, compile: bool | str = False) -> Iterator[None]:
    """Within the block the task's model runs in channels-last memory format (the layout the CPU's oneDNN and GPUs'
    tensor cores convolve fastest), and through torch.compile when `compile` is True (inductor) or names a backend.
    Training keeps the default layout."""
    model = task.model
    set_layout(model, torch.channels_last)
    if compile:
        backend = "inductor" if compile is True else str(compile)
        compiled = _COMPILED.setdefault(task, {})
        if backend not in compiled or compiled[backend][0] is not model:  # a model rebuilt since is compiled anew
            compiled[backend] = (model, torch.compile(model, backend=backend))
        task.model = compiled[backend][1]  # the task's hooks call task.model: they run the compiled one
    try:
        yield
    finally:
        task.model = model
        set_layout(model, torch.contiguous_format)


def image_batches(
    task: RunnableTask,
    images: Any,
    *,
    batch_size: int = 64,
    progress: str | None = None,
    show: bool | None = None,
    unreadable: list[tuple[int, DataError]] | None = None,
) -> Iterator[tuple[dict[str, Any], list[tuple[int, int]]]]:
    """Batches of images through the task's eval pipeline, on the inference device (the task moved there and set
    to eval), each with the images' original (height, width). Files are read one batch at a time; `progress`
    names a progress bar over the batches, shown where `show` says (None: on a terminal, for more than one).
    With an `unreadable` list, a file that cannot be read is left out and its (index, DataError) added there;
    without, it is raised."""
    batch_size = whole_number("batch_size", batch_size)
    channels = task.config.in_chans
    items = as_image_list(images, channels)
    pipeline = task.eval_transform()
    device = inference_device()
    with torch.inference_mode(False):  # parameters moved in inference mode could never train again
        task.to(device).eval()
    starts = range(0, len(items), batch_size)
    shown = progress is not None and (sys.stderr.isatty() and len(starts) > 1 if show is None else show)
    for start in tqdm(starts, desc=progress, unit="batch", disable=not shown):
        arrays = image_arrays(items[start : start + batch_size], channels, first=start, unreadable=unreadable)
        if not arrays:
            continue
        batch = task.collate([{"image": pipeline(image=array)["image"]} for array in arrays])
        batch = {key: to_device(value, device) for key, value in batch.items()}
        batch["image"] = task.model_inputs(batch["image"])
        yield batch, [array.shape[:2] for array in arrays]


def image_arrays(
    images: Any, channels: int, *, first: int = 0, unreadable: list[tuple[int, DataError]] | None = None
) -> list[np.ndarray]:
    """Image paths (or a folder), one HxWxC array or a batch (N, H, W[, C]) to checked HxWxC uint8 arrays of
    `channels` channels (`first`: the index of the first, for messages); a file that cannot be read goes to
    `unreadable` as (index, error) when it is a list, else is raised."""
    arrays = []
    for index, item in enumerate(as_image_list(images, channels), start=first):
        if isinstance(item, (str, Path)):
            try:
                arrays.append(read_image(item, channels))
            except DataError as error:
                if unreadable is None:
                    raise
                unreadable.append((index, error))
        else:
            arrays.append(as_image(item, f"images[{index}]", channels=channels))
    return arrays


def to_device(value: Any, device: torch.device) -> Any:
    """A batch value on `device`: 4-D image batches in channels-last layout, copied without blocking from pinned
    memory to a GPU; lists (e.g. R-CNN's images of several sizes) item by item."""
    if isinstance(value, list):
        return [to_device(item, device) for item in value]
    if not torch.is_tensor(value):
        return value
    if device.type == "cuda":
        value = value.pin_memory().to(device, non_blocking=True)
    return channels_last(value.to(device))


def set_layout(model: nn.Module, layout: torch.memory_format) -> None:
    """`model`'s parameters in `layout`."""
    # Outside inference mode whatever the caller's (Lightning's test loop is inside it): parameters converted
    # in it would become inference tensors, which no later fit could train.
    with torch.inference_mode(False):
        model.to(memory_format=layout)


def channels_last(value: torch.Tensor) -> torch.Tensor:
    """A 4-D tensor in channels-last layout (others unchanged)."""
    return value.contiguous(memory_format=torch.channels_last) if value.dim() == 4 else value
