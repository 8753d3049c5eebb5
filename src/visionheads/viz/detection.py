"""Detection figures: images with true and predicted boxes (and masks), and precision-recall curves per category."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

SHOWN_SCORE = 0.5  # predictions drawn on the images: those at least this confident


def plot_detections(
    samples: list[dict[str, Any]], predicted: list[dict[str, Any]], names: list[str], path: Path
) -> Path:
    """Two rows: each image with its true boxes (green), and with the predicted ones (coloured by class, scored)."""
    count = len(samples)
    figure = Figure(figsize=(2.2 * count + 0.5, 4.8), layout="constrained")
    axes = figure.subplots(2, count, squeeze=False)
    palette = colormaps["tab10"]
    for column, (sample, found) in enumerate(zip(samples, predicted, strict=True)):
        for row in range(2):
            image = sample["image"]
            axes[row, column].imshow(image.squeeze(), cmap="gray" if image.shape[-1] == 1 else None)
            axes[row, column].axis("off")
        for box, label in zip(np.asarray(sample["boxes"]).reshape(-1, 4), np.asarray(sample["labels"]), strict=True):
            _box(axes[0, column], box, "lime", names[int(label)])
        keep = found["scores"] >= SHOWN_SCORE
        if "masks" in found and keep.any():
            numbered = found["masks"][keep] * (1 + np.arange(keep.sum()))[:, None, None]  # instance k painted k
            overlay = np.ma.masked_equal(numbered.max(axis=0), 0)
            axes[1, column].imshow(overlay, cmap="tab10", alpha=0.45, interpolation="nearest")
        shown = zip(found["boxes"][keep], found["label_ids"][keep], found["scores"][keep], strict=True)
        for box, label, score in shown:
            _box(axes[1, column], box, palette(int(label) % 10), f"{names[int(label)]} {score:.2f}")
    axes[0, 0].set_title("true", loc="left", fontsize=9)
    axes[1, 0].set_title(f"predicted (score ≥ {SHOWN_SCORE})", loc="left", fontsize=9)
    figure.savefig(path, dpi=100)
    return path


def draw_detections(image: np.ndarray, found: dict[str, Any], path: Path) -> Path:
    """One image with its predicted boxes (score >= SHOWN_SCORE), labelled and scored (PNG at about its size)."""
    height, width = image.shape[:2]
    figure = Figure(figsize=(max(2.0, width / 100), max(2.0, height / 100)), layout="constrained")
    axis = figure.subplots()
    axis.imshow(image.squeeze(), cmap="gray" if image.shape[-1] == 1 else None)
    axis.axis("off")
    palette = colormaps["tab10"]
    keep = np.asarray(found["scores"]) >= SHOWN_SCORE
    for box, label, name, score in zip(
        found["boxes"][keep],
        found["label_ids"][keep],
        np.asarray(found["labels"])[keep],
        found["scores"][keep],
        strict=True,
    ):
        _box(axis, box, palette(int(label) % 10), f"{name} {score:.2f}")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path


def _box(axis, box: np.ndarray, colour: Any, text: str) -> None:
    x0, y0, x1, y1 = (float(v) for v in box)
    axis.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=colour, linewidth=1.2))
    axis.text(x0, y0, text, fontsize=6, color="black", backgroundcolor=colour, va="bottom")


def plot_precision_recall(precision: np.ndarray, names: list[str], path: Path) -> Path:
    """COCO's interpolated precision at its 101 recall points, one curve per category (IoU 0.5)."""
    figure = Figure(figsize=(5.5, 4.2), layout="constrained")
    axis = figure.subplots()
    recall = np.linspace(0, 1, precision.shape[1])
    for curve, name in zip(precision, names, strict=False):
        shown = np.where(curve < 0, np.nan, curve)  # -1: no truth of this category
        axis.plot(recall, shown, label=f"{name} (AP50 {np.nanmean(shown):.3f})")
    axis.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title="precision-recall, IoU 0.5")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, loc="lower left")
    figure.savefig(path, dpi=100)
    return path
