"""Bilinear resizing of float maps as torch's `F.interpolate(..., mode="bilinear", align_corners=False)` does it
(half-pixel centres, sources below 0 clamped to 0, float32), in NumPy: the exported runtime brings scores and
reconstructions back to each image's size as the task does."""

from __future__ import annotations

import numpy as np


def _weights(source: int, target: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per output index along one axis: the lower source index, the upper one and the upper one's weight."""
    scale = np.float32(source / target)
    position = np.maximum((np.arange(target, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5), 0)
    lower = position.astype(np.int64)  # floor: positions are >= 0
    upper = np.minimum(lower + 1, source - 1)
    return lower, upper, (position - lower).astype(np.float32)


def resize_bilinear(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """maps: float32 (C, h, w). Returns: (C, H, W) for `size` (H, W), as torch's bilinear interpolation."""
    maps = np.asarray(maps, dtype=np.float32)
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    top, bottom, down = _weights(maps.shape[-2], size[0])
    left, right, across = _weights(maps.shape[-1], size[1])
    rows_top, rows_bottom = maps[:, top], maps[:, bottom]  # (C, H, w)
    down = down[:, None]
    upper = rows_top[:, :, left] * (1 - across) + rows_top[:, :, right] * across
    lower = rows_bottom[:, :, left] * (1 - across) + rows_bottom[:, :, right] * across
    return (upper * (1 - down) + lower * down).astype(np.float32)
