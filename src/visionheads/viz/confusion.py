"""Confusion matrices, drawn by scikit-learn's ConfusionMatrixDisplay."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import ConfusionMatrixDisplay


def plot_confusion(matrix: np.ndarray, class_names: list[str] | None, path: Path) -> Path:
    """Save a confusion matrix (rows: true class, columns: predicted) to `path` (PNG)."""
    size = min(4 + 0.45 * len(matrix), 16)
    figure = Figure(figsize=(size, size), layout="constrained")
    axis = figure.subplots()
    display = ConfusionMatrixDisplay(matrix, display_labels=class_names)
    display.plot(ax=axis, colorbar=False, values_format="d", xticks_rotation=45 if len(matrix) > 8 else "horizontal")
    axis.set_title(
        f"confusion matrix ({int(matrix.sum())} images, accuracy {np.trace(matrix) / max(matrix.sum(), 1):.3f})"
    )
    figure.savefig(path, dpi=110)
    return path
