"""Reading image files into HxWxC uint8 arrays, with errors that name the file."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from visionheads.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def check_image_file(path: Path) -> None:
    """Read the header of `path` (cheap); DataError if it is not an image."""
    try:
        with Image.open(path) as image:
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise DataError(f"{path}: not a readable image ({error}); remove or replace the file") from error


def read_image(path: str | Path, channels: int) -> np.ndarray:
    """Decode `path` to HxWxC uint8 with `channels` (1: greyscale, 3: RGB)."""
    mode = {1: "L", 3: "RGB"}.get(channels)
    if mode is None:
        raise DataError(f"{path}: image files can be read with 1 or 3 channels, not {channels}")
    try:
        with Image.open(path) as image:
            array = np.asarray(image.convert(mode))
    except FileNotFoundError as error:
        raise DataError(f"{path}: file not found") from error
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise DataError(f"{path}: cannot decode image ({error}); remove or replace the file") from error
    return array[:, :, None] if array.ndim == 2 else array


def as_image_list(images: Any) -> list[Any]:
    """A path, one HxWxC array, a batch (N, H, W[, C]) or a sequence of those, as a list of single images."""
    if isinstance(images, (str, Path)):
        return [images]
    if isinstance(images, np.ndarray) or isinstance(images, torch.Tensor):
        array = np.asarray(images)
        if array.ndim == 4 or (array.ndim == 3 and array.shape[-1] not in (1, 3, 4)):
            return list(array)  # a batch (N, H, W, C) or greyscale (N, H, W)
        return [array]
    if isinstance(images, Sequence) and images:
        return list(images)
    raise DataError(f"predict takes image paths or HxWxC arrays, got {type(images).__name__}")
