"""Autoencoder figures: rows of images (originals over reconstructions, noisy/denoised/clean, an interpolation),
a grid of samples, and a 2-D map of latent codes coloured by class."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from visionheads.viz.grid import square_panels


def _show(axis, image: np.ndarray) -> None:
    axis.imshow(image.squeeze(), cmap="gray" if image.shape[-1] == 1 else None, vmin=0, vmax=255)
    axis.axis("off")


def plot_image_rows(rows: list[list[np.ndarray]], labels: list[str], path: Path) -> Path:
    """One row of HxWxC uint8 images per entry of `rows`, each row named by `labels` (PNG)."""
    columns = max(len(row) for row in rows)
    figure = Figure(figsize=(1.3 * columns + 1, 1.4 * len(rows)), layout="constrained")
    axes = figure.subplots(len(rows), columns, squeeze=False)
    for row, (images, label) in enumerate(zip(rows, labels, strict=True)):
        for column in range(columns):
            if column < len(images):
                _show(axes[row, column], images[column])
            else:
                axes[row, column].axis("off")
        axes[row, 0].set_title(label, loc="left", fontsize=9)
    figure.savefig(path, dpi=100)
    return path


def plot_image_grid(images: list[np.ndarray], path: Path, *, title: str) -> Path:
    """HxWxC uint8 images in a square-ish grid (PNG)."""
    figure, axes = square_panels(len(images))
    for axis, image in zip(axes, images, strict=True):
        _show(axis, image)
    figure.suptitle(title)
    figure.savefig(path, dpi=100)
    return path


def plot_latent_map(codes: np.ndarray, labels: list, names: list[str] | None, path: Path) -> Path:
    """Codes (N, D) on their first two principal axes (scikit-learn's PCA), coloured by label where known (PNG)."""
    from sklearn.decomposition import PCA

    points = codes[:, :2] if codes.shape[1] <= 2 else PCA(n_components=2, random_state=0).fit_transform(codes)
    figure = Figure(figsize=(6, 5), layout="constrained")
    axis = figure.subplots()
    known = [label is not None for label in labels]
    if any(known):
        palette = colormaps["tab10"]
        classes = sorted({int(label) for label in labels if label is not None})
        for label in classes:
            chosen = np.array([lab is not None and int(lab) == label for lab in labels])
            name = names[label] if names and label < len(names) else str(label)
            axis.scatter(points[chosen, 0], points[chosen, 1], s=8, color=palette(label % 10), label=name)
        axis.legend(markerscale=2, fontsize=8)
    else:
        axis.scatter(points[:, 0], points[:, 1], s=8)
    axis.set_title(f"latent means of {len(codes)} images (PCA)" if codes.shape[1] > 2 else "latent means")
    axis.grid(alpha=0.3)
    figure.savefig(path, dpi=110)
    return path
