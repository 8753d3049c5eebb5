"""Confusion matrices, drawn by scikit-learn's ConfusionMatrixDisplay."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import ConfusionMatrixDisplay


def plot_confusion(
    matrix: np.ndarray, class_names: list[str] | None, path: Path, *, unit: str = "images", per_true_class: bool = False
) -> Path:
    """Save a confusion matrix (K, K) of counts of `unit` (rows: true class, columns: predicted) to `path` (PNG);
    `per_true_class` shows each row as shares of its true class (recall on the diagonal), for pixel counts."""
    size = min(4 + 0.45 * len(matrix), 16)
    figure = Figure(figsize=(size, size), layout="constrained")
    axis = figure.subplots()
    shown, value_format = matrix, "d"
    if per_true_class:
        totals = matrix.sum(axis=1, keepdims=True)
        shown, value_format = np.divide(matrix, totals, out=np.zeros(matrix.shape), where=totals > 0), ".2f"
    display = ConfusionMatrixDisplay(shown, display_labels=class_names)
    rotation = 45 if len(matrix) > 8 else "horizontal"
    display.plot(ax=axis, colorbar=False, values_format=value_format, xticks_rotation=rotation)
    total = int(matrix.sum())
    axis.set_title(f"confusion matrix ({total} {unit}, accuracy {np.trace(matrix) / max(total, 1):.3f})")
    figure.savefig(path, dpi=110)
    return path
