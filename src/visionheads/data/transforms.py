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


def eval_pipeline(image_size: int, **compose_kwargs) -> A.Compose:
    """Resize to image_size x image_size, to a CxHxW uint8 tensor."""
    return A.Compose([A.Resize(image_size, image_size), ToTensor()], **compose_kwargs)


def train_pipeline(
    image_size: int, *, flips: bool, seed: int | None = None, fill_mask: int = 0, **compose_kwargs
) -> A.Compose:
    """Mild geometric and photometric jitter; horizontal flips only where a mirror keeps the meaning.

    `fill_mask` labels the mask pixels that a shift or rotation brings in from outside the image.
    """
    steps = [
        A.Resize(image_size, image_size),
        A.Affine(scale=(0.9, 1.1), translate_percent=(-0.08, 0.08), rotate=(-10, 10), fill_mask=fill_mask, p=0.8),
    ]
    if flips:
        steps.append(A.HorizontalFlip(p=0.5))
    steps += [A.RandomBrightnessContrast(0.15, 0.15, p=0.3), ToTensor()]
    return A.Compose(steps, seed=seed, **compose_kwargs)


def photometric_pipeline(image_size: int, *, seed: int | None = None, **compose_kwargs) -> A.Compose:
    """Resize, brightness/contrast jitter: no geometric change, for targets that geometry defines."""
    steps = [A.Resize(image_size, image_size), A.RandomBrightnessContrast(0.15, 0.15, p=0.3), ToTensor()]
    return A.Compose(steps, seed=seed, **compose_kwargs)
