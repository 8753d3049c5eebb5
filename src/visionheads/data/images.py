"""Reading image files into HxWxC uint8 arrays, with errors that name the file."""

from __future__ import annotations

import os
import re
import struct
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from visionheads.data.samples import layouts
from visionheads.errors import ConfigError, DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
MAX_PIXELS_VARIABLE = "VISIONHEADS_MAX_IMAGE_PIXELS"
DEFAULT_MAX_PIXELS = 89_478_485  # PIL's own default limit (about 9459 x 9459): above it a file may be a bomb
# What PIL's decoders raise on files that are not what their header says (truncated, junk after a valid header).
DECODE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error)


def max_image_pixels() -> int:
    """The most pixels (width x height) an image file may have: $VISIONHEADS_MAX_IMAGE_PIXELS, else 89,478,485."""
    text = os.environ.get(MAX_PIXELS_VARIABLE, "").strip()
    if not text:
        return DEFAULT_MAX_PIXELS
    value = int(text.replace("_", "")) if text.replace("_", "").isdigit() else 0
    if value < 1:
        raise ConfigError(f"{MAX_PIXELS_VARIABLE}={text!r}; give a whole number of pixels >= 1, e.g. 200000000")
    return value


@contextmanager
def open_image(path: str | Path) -> Iterator[Image.Image]:
    """The image file at `path`, its header read and its pixels not yet decoded; a DataError naming the file if it
    is missing, not an image, empty, or larger than `max_image_pixels()` (a decompression bomb, perhaps)."""
    limit = max_image_pixels()
    if Image.MAX_IMAGE_PIXELS is not None and limit > Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = limit  # PIL refuses twice its own limit at open, before our check could allow it
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the check below decides, saying the fix
            image = Image.open(path)
    except FileNotFoundError as error:
        raise DataError(f"{path}: file not found") from error
    except Image.DecompressionBombError as error:
        raise _too_large(path, str(error), limit) from error
    except DECODE_ERRORS as error:
        raise DataError(f"{path}: not a readable image ({error}); remove or replace the file") from error
    with image:
        width, height = image.size
        if width * height > limit:
            raise _too_large(path, f"{width}x{height} = {width * height:,} pixels", limit)
        if width == 0 or height == 0:
            raise DataError(f"{path}: image is {width}x{height}, empty; remove or replace the file")
        yield image


def check_image_file(path: Path) -> None:
    """Check that `path` is a whole, readable image without decoding it in full; DataError naming it if not.

    The header for every format; PNG's chunk checksums (`verify`); a JPEG's whole compressed stream read at 1/8
    scale (Pillow's draft mode skips most of the decoding work), which finds a truncated file."""
    with open_image(path) as image:
        try:
            if image.format == "JPEG":
                image.draft(image.mode, (max(1, image.width // 8), max(1, image.height // 8)))
                image.load()
            else:
                image.verify()
        except DECODE_ERRORS as error:
            raise DataError(f"{path}: not a readable image ({error}); remove or replace the file") from error


def check_image_files(paths: Sequence[Path], where: str) -> None:
    """`check_image_file` for each of `paths`; one DataError naming every unreadable one (`where`: their folder)."""
    problems = []
    for path in paths:
        try:
            check_image_file(path)
        except DataError as error:
            problems.append(str(error))
    if problems:
        shown = "\n  ".join(problems[:20]) + (f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else "")
        raise DataError(
            f"{where}: {len(problems)} of {len(paths)} image files cannot be read; remove or replace them:\n  {shown}"
        )


def read_image(path: str | Path, channels: int) -> np.ndarray:
    """Decode `path` to HxWxC uint8 with `channels` (1: greyscale, 3: RGB)."""
    mode = {1: "L", 3: "RGB"}.get(channels)
    if mode is None:
        raise DataError(f"{path}: image files can be read with 1 or 3 channels, not {channels}")
    with open_image(path) as image:
        try:
            array = np.asarray(image.convert(mode))
        except Image.DecompressionBombError as error:
            raise _too_large(path, str(error), max_image_pixels()) from error
        except DECODE_ERRORS as error:
            raise DataError(f"{path}: cannot decode image ({error}); remove or replace the file") from error
        except MemoryError as error:  # e.g. a corrupt chunk length that asks Pillow to read gigabytes
            raise DataError(
                f"{path}: decoding the image ran out of memory; the file is corrupt or too large for this machine"
            ) from error
    if array.size == 0:
        raise DataError(f"{path}: image decodes to shape {array.shape}, empty; remove or replace the file")
    return array[:, :, None] if array.ndim == 2 else array


def _too_large(path: str | Path, size: str, limit: int) -> DataError:
    announced = re.search(r"\((\d+) pixels\)", size)  # PIL's own refusal says "Image size (N pixels) exceeds ..."
    size = f"{int(announced.group(1)):,} pixels" if announced else size
    return DataError(
        f"{path}: image too large ({size}); the limit is {limit:,} pixels against decompression bombs. If the file "
        f"is trusted, raise it: set the environment variable {MAX_PIXELS_VARIABLE} (e.g. {MAX_PIXELS_VARIABLE}="
        f"{4 * limit})"
    )


def as_image_list(images: Any, channels: int | None = None) -> list[Any]:
    """A path (a folder: its image files), one HxWxC array, a batch (N, H, W[, C]) or a sequence of those, as a list
    of single images (paths stay paths: they are read when their batch is).

    With the task's `channels`, a 3-D array that would be read against them (N greyscale images for a colour task,
    one colour image for a greyscale one; e.g. a channels-first CxHxW image) is a DataError naming the layouts."""
    if isinstance(images, (str, Path)):
        if Path(images).is_dir():  # a folder: its image files, read batch by batch as predict goes
            found = sorted(p for p in Path(images).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise DataError(f"{images}: a folder with no image files ({', '.join(IMAGE_SUFFIXES)})")
            return found
        return [images]
    if isinstance(images, np.ndarray) or isinstance(images, torch.Tensor):
        array = np.asarray(images)
        batch = array.ndim == 4 or (array.ndim == 3 and array.shape[-1] not in (1, 3, 4))
        if array.ndim == 3 and channels is not None:
            _check_layout(array.shape, channels, batch)
        return list(array) if batch else [array]  # a batch (N, H, W, C) or greyscale (N, H, W)
    if isinstance(images, Sequence) and images:
        return list(images)
    raise DataError(f"predict takes image paths or HxWxC arrays, got {type(images).__name__}")


def _check_layout(shape: tuple[int, ...], channels: int, batch: bool) -> None:
    if batch and channels != 1:
        read = f"{shape[0]} greyscale image(s) NxHxW"
        hint = "; a channels-first image is np.transpose(image, (1, 2, 0))" if shape[0] == channels else ""
    elif not batch and shape[-1] != channels:
        read, hint = f"one HxWxC image with {shape[-1]} channel(s)", ""
    else:
        return
    raise DataError(
        f"images: an array of shape {shape} reads as {read}, but the task expects {channels} channel(s); "
        f"give {layouts(channels)}{hint}"
    )
