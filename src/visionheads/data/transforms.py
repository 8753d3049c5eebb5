"""Default albumentations pipelines; targets (masks, boxes) move with the image.

They end in a CxHxW uint8 tensor: the task normalises whole batches on the device (`Task.model_inputs`), so a GPU
gets a quarter of the bytes and normalises them itself (on a CPU it costs what per-image normalising did).
"""

from __future__ import annotations

from typing import Any

import albumentations as A
import numpy as np
import torch
from albumentations.pytorch import ToTensorV2

from visionheads.errors import ConfigError, whole_number

Size = int | tuple[int, int]  # a side (square) or (height, width)


def image_hw(size: Size) -> tuple[int, int]:
    """A size as (height, width): a side stands for a square."""
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def checked_size(name: str, size: object) -> Size:
    """`size` as a side or a (height, width) tuple of whole numbers, else a ConfigError naming `name`."""
    if isinstance(size, (list, tuple)):
        if len(size) != 2:
            raise ConfigError(f"{name} is a side or (height, width), got {list(size)!r}")
        height, width = (whole_number(f"{name}[{i}]", side) for i, side in enumerate(size))
        return height if height == width else (height, width)
    return whole_number(name, size)


class ToTensor(ToTensorV2):
    """albumentations' ToTensorV2 that copies a read-only array first (a memory-mapped or shared dataset, a Pillow
    view, a step that passed the input through): torch.from_numpy warns on every such array."""

    def apply(self, img: np.ndarray, **params: Any) -> torch.Tensor:
        return super().apply(_writable(img), **params)

    def apply_to_mask(self, mask: np.ndarray, **params: Any) -> torch.Tensor:
        return super().apply_to_mask(_writable(mask), **params)

    def apply_to_masks(self, masks: np.ndarray | list[np.ndarray], **params: Any) -> Any:
        return super().apply_to_masks(masks if isinstance(masks, list) else _writable(masks), **params)


def _writable(array: np.ndarray) -> np.ndarray:
    return array if array.flags.writeable else array.copy()


def eval_pipeline(image_size: Size, **compose_kwargs) -> A.Compose:
    """Resize to image_size (a side or (height, width)), to a CxHxW uint8 tensor."""
    return A.Compose([A.Resize(*image_hw(image_size)), ToTensor()], **compose_kwargs)


class MaskAsItIs:
    """An eval pipeline for the image whose mask passes through untouched, at its own size: metrics are taken
    against the labels as they are, not against labels resized to the model's input."""

    def __init__(self, pipeline: A.Compose) -> None:
        self.pipeline = pipeline

    def __call__(self, *, image: np.ndarray, mask: np.ndarray | None = None) -> dict[str, Any]:
        out = dict(self.pipeline(image=image))
        if mask is not None:
            out["mask"] = torch.from_numpy(_writable(np.ascontiguousarray(mask)))  # a read-only mask: torch warns
        return out


def train_pipeline(
    image_size: Size,
    *,
    flips: bool,
    seed: int | None = None,
    fill_mask: int = 0,
    crop_size: Size | None = None,
    scale: tuple[float, float] = (0.9, 1.1),
    jitter: bool = True,
    **compose_kwargs,
) -> A.Compose:
    """Mild geometric and photometric jitter; horizontal flips only where a mirror keeps the meaning; with
    `crop_size`, a random crop of the resized image (padded with `fill_mask` labels where it is smaller).

    `fill_mask` labels the mask pixels that a shift or rotation brings in from outside the image; `scale` is the
    range of the random zoom; `jitter=False` leaves out the zoom, shift, rotation and colour jitter (crops and flips
    only).
    """
    steps = [A.Resize(*image_hw(image_size))]
    if jitter:
        steps.append(
            A.Affine(scale=scale, translate_percent=(-0.08, 0.08), rotate=(-10, 10), fill_mask=fill_mask, p=0.8)
        )
    if crop_size is not None:
        height, width = image_hw(crop_size)
        steps += [
            A.PadIfNeeded(height, width, border_mode=0, fill=0, fill_mask=fill_mask),
            A.RandomCrop(height, width),
        ]
    if flips:
        steps.append(A.HorizontalFlip(p=0.5))
    if jitter:
        steps.append(A.RandomBrightnessContrast(0.15, 0.15, p=0.3))
    return A.Compose([*steps, ToTensor()], seed=seed, **compose_kwargs)


def photometric_pipeline(image_size: Size, *, seed: int | None = None, **compose_kwargs) -> A.Compose:
    """Resize, brightness/contrast jitter: no geometric change, for targets that geometry defines."""
    steps = [A.Resize(*image_hw(image_size)), A.RandomBrightnessContrast(0.15, 0.15, p=0.3), ToTensor()]
    return A.Compose(steps, seed=seed, **compose_kwargs)
