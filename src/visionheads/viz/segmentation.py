"""Segmentation figures: images with their true and predicted masks."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import BoundaryNorm, ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch


def class_colours(count: int) -> ListedColormap:
    """Distinct colours for `count` classes, background (class 0) black."""
    palette = colormaps["tab20"] if count > 10 else colormaps["tab10"]
    colours = [(0.0, 0.0, 0.0, 1.0)] + [palette(i % palette.N) for i in range(count - 1)]
    return ListedColormap(colours)


def plot_mask_grid(
    images: list[np.ndarray],
    true: list[np.ndarray],
    predicted: list[np.ndarray],
    names: list[str],
    path: Path,
    *,
    colors: Sequence[Sequence[int]] | None = None,
) -> Path:
    """Three rows per image group: the image, its true mask, the predicted mask (PNG, with a class legend); `colors`:
    an (R, G, B) 0..255 per class, else distinct ones with class 0 black."""
    count = len(images)
    colours = ListedColormap(np.asarray(colors) / 255.0) if colors is not None else class_colours(len(names))
    norm = BoundaryNorm(np.arange(len(names) + 1) - 0.5, len(names))
    figure = Figure(figsize=(1.8 * count + 1.5, 5.6), layout="constrained")
    axes = figure.subplots(3, count, squeeze=False)
    for column in range(count):
        image = images[column]
        axes[0, column].imshow(image.squeeze(), cmap="gray" if image.shape[-1] == 1 else None)
        for row, mask in ((1, true[column]), (2, predicted[column])):
            shown = np.ma.masked_where(mask >= len(names), mask)  # ignored pixels stay white
            axes[row, column].imshow(shown, cmap=colours, norm=norm, interpolation="nearest")
        for row in range(3):
            axes[row, column].axis("off")
    for row, label in enumerate(("image", "true", "predicted")):
        axes[row, 0].set_title(label, loc="left", fontsize=9)
    handles = [Patch(color=colours(i), label=name) for i, name in enumerate(names)]
    figure.legend(handles=handles, loc="outside right center", fontsize=8)
    figure.savefig(path, dpi=100)
    return path
