"""Figures of a model's inside: first-layer kernels as tiles, a stage's feature maps, heatmaps over images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from PIL import Image

from visionheads.viz.grid import square_panels

GAP = 1  # pixels between tiles of a mosaic


def kernel_mosaic(kernels: np.ndarray, *, columns: int | None = None) -> np.ndarray:
    """Kernels (N, C, kh, kw) as one image of N tiles with 1-pixel white gaps: (rows*(kh+1)+1, cols*(kw+1)+1, 3) in
    [0, 1]. Three-channel kernels are colour; others the mean over their channels, grey. Each tile is scaled on its
    own, symmetric about 0 (zero weights are mid-grey), as in AlexNet's figure."""
    count, channels, height, width = kernels.shape
    tiles = kernels if channels == 3 else np.repeat(kernels.mean(axis=1, keepdims=True), 3, axis=1)
    limit = np.abs(tiles).reshape(count, -1).max(axis=1)[:, None, None, None]
    tiles = 0.5 + 0.5 * tiles / np.where(limit > 0, limit, 1.0)  # (N, 3, kh, kw) in [0, 1]
    columns = columns or int(np.ceil(np.sqrt(count)))
    rows = int(np.ceil(count / columns))
    mosaic = np.ones((rows * (height + GAP) + GAP, columns * (width + GAP) + GAP, 3))
    for index, tile in enumerate(tiles):
        top, left = GAP + (index // columns) * (height + GAP), GAP + (index % columns) * (width + GAP)
        mosaic[top : top + height, left : left + width] = tile.transpose(1, 2, 0)
    return mosaic


def plot_kernels(kernels: np.ndarray, path: Path, *, title: str) -> Path:
    """First-layer kernels (N, C, kh, kw) as a grid of N tiles (`kernel_mosaic`), titled (PNG)."""
    mosaic = kernel_mosaic(kernels)
    height, width = mosaic.shape[:2]
    figure = Figure(figsize=(max(3.0, width / 18), max(3.0, height / 18) + 0.4), layout="constrained")
    axis = figure.subplots()
    axis.imshow(mosaic, interpolation="nearest")
    axis.axis("off")
    axis.set_title(title, fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path


def plot_feature_maps(maps: np.ndarray, path: Path, *, title: str, limit: int = 64) -> Path:
    """The first `limit` of a stage's maps (C, h, w), one grey panel each on its own scale (PNG)."""
    shown = maps[:limit]
    figure, axes = square_panels(len(shown))
    for index, (axis, feature_map) in enumerate(zip(axes, shown, strict=True)):
        axis.imshow(feature_map, cmap="gray", interpolation="nearest")
        axis.set_title(str(index), fontsize=6)
        axis.axis("off")
    figure.suptitle(title if len(maps) <= limit else f"{title}, first {limit}", fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path


def overlay_heatmap(image: np.ndarray, heatmap: np.ndarray, *, alpha: float = 0.5) -> np.ndarray:
    """An HxWxC uint8 image with an (H, W) heatmap in [0, 1] blended over it in the jet colours: HxWx3 uint8."""
    picture = image.astype(np.float32) / 255.0
    if picture.shape[-1] == 1:
        picture = np.repeat(picture, 3, axis=-1)
    colours = colormaps["jet"](np.clip(heatmap, 0.0, 1.0))[..., :3]
    return np.round(255 * ((1 - alpha) * picture + alpha * colours)).astype(np.uint8)


def save_overlay(image: np.ndarray, heatmap: np.ndarray, path: Path) -> Path:
    """`overlay_heatmap` written as a PNG at the image's own size."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(overlay_heatmap(image, heatmap)).save(path)
    return path
