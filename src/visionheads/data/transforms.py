"""Default albumentations pipelines; targets (masks, boxes) move with the image."""

from __future__ import annotations

import albumentations as A
from albumentations.pytorch import ToTensorV2


def eval_pipeline(image_size: int, mean: tuple[float, ...], std: tuple[float, ...], **compose_kwargs) -> A.Compose:
    """Resize to image_size x image_size, normalise, to a CxHxW float tensor."""
    return A.Compose(
        [A.Resize(image_size, image_size), A.Normalize(mean=mean, std=std), ToTensorV2()], **compose_kwargs
    )


def train_pipeline(
    image_size: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    *,
    flips: bool,
    seed: int | None = None,
    fill_mask: int = 0,
    **compose_kwargs,
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
    steps += [A.RandomBrightnessContrast(0.15, 0.15, p=0.3), A.Normalize(mean=mean, std=std), ToTensorV2()]
    return A.Compose(steps, seed=seed, **compose_kwargs)


def photometric_pipeline(
    image_size: int, mean: tuple[float, ...], std: tuple[float, ...], *, seed: int | None = None, **compose_kwargs
) -> A.Compose:
    """Resize, brightness/contrast jitter, normalise: no geometric change, for targets that geometry defines."""
    steps = [A.Resize(image_size, image_size), A.RandomBrightnessContrast(0.15, 0.15, p=0.3)]
    return A.Compose([*steps, A.Normalize(mean=mean, std=std), ToTensorV2()], seed=seed, **compose_kwargs)
