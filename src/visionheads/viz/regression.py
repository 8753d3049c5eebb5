"""Regression figures: predicted against true values, and rotated digits turned upright."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure


def plot_predicted_vs_true(predicted: np.ndarray, true: np.ndarray, path: Path, *, unit: str = "") -> Path:
    """Scatter of predictions against targets with the identity line (PNG)."""
    figure = Figure(figsize=(5.5, 5), layout="constrained")
    axis = figure.subplots()
    axis.scatter(true, predicted, s=8, alpha=0.6)
    low, high = float(min(true.min(), predicted.min())), float(max(true.max(), predicted.max()))
    axis.plot([low, high], [low, high], color="black", linewidth=1, label="perfect")
    axis.set_xlabel(f"true{' (' + unit + ')' if unit else ''}")
    axis.set_ylabel(f"predicted{' (' + unit + ')' if unit else ''}")
    axis.set_title(f"predicted vs true ({len(true)} samples)")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.savefig(path, dpi=110)
    return path


def plot_derotated_grid(
    rotated: list[np.ndarray], derotated: list[np.ndarray], angles: list[float], path: Path
) -> Path:
    """Pairs of images: as given (with their true angle) and rotated back by the predicted angle (PNG)."""
    count = len(rotated)
    columns = min(count, 8)
    rows = 2 * int(np.ceil(count / columns))
    figure = Figure(figsize=(1.4 * columns, 1.5 * rows), layout="constrained")
    axes = np.atleast_2d(figure.subplots(rows, columns, squeeze=False))
    for axis in axes.flat:
        axis.axis("off")
    for index in range(count):
        row, column = 2 * (index // columns), index % columns
        axes[row, column].imshow(rotated[index].squeeze(), cmap="gray")
        axes[row, column].set_title(f"{angles[index]:+.0f}°", fontsize=8)
        axes[row + 1, column].imshow(derotated[index].squeeze(), cmap="gray")
        axes[row + 1, column].set_title("upright", fontsize=8)
    figure.suptitle("rotated (top) and turned upright by the predicted angle (bottom)")
    figure.savefig(path, dpi=110)
    return path
