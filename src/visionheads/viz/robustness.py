"""Adversarial robustness figures: a metric against the attack strength ε, and clean/adversarial image pairs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure


def plot_robustness(
    eps: list[float], curves: dict[str, list[float]], clean: float | None, metric: str, path: Path, *, detail: str = ""
) -> Path:
    """`metric` against ε, one line per attack, the clean value dashed (PNG)."""
    figure = Figure(figsize=(5.5, 4), layout="constrained")
    axis = figure.subplots()
    for attack, values in curves.items():
        axis.plot(eps, values, marker="o", label=attack)
    if clean is not None:
        axis.axhline(clean, color="grey", linestyle="--", linewidth=1, label="clean")
    axis.set_xlabel("ε (L∞, pixels in [0, 1])")
    axis.set_ylabel(metric)
    axis.set_title(f"{metric} under attack{' (' + detail + ')' if detail else ''}")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.savefig(path, dpi=110)
    return path


def plot_adversarial_examples(
    rows: dict[str, tuple[list[np.ndarray], list[str], list[bool | None]]], path: Path
) -> Path:
    """One row per entry (e.g. "clean", "fgsm ε=0.1"): HxWxC uint8 images captioned with their predictions, green
    where right, red where wrong, black where not judged (PNG)."""
    columns = max(len(images) for images, _, _ in rows.values())
    figure = Figure(figsize=(1.5 * columns + 0.5, 1.75 * len(rows)), layout="constrained")
    axes = figure.subplots(len(rows), columns, squeeze=False)
    colours = {True: "green", False: "red", None: "black"}
    for row, (label, (images, captions, correct)) in enumerate(rows.items()):
        for column, axis in enumerate(axes[row]):
            axis.axis("off")
            if column < len(images):
                image = images[column]
                axis.imshow(image.squeeze(), cmap="gray" if image.shape[-1] == 1 else None, vmin=0, vmax=255)
                axis.set_title(captions[column], fontsize=8, color=colours[correct[column]])
        axes[row, 0].text(-0.1, 0.5, label, transform=axes[row, 0].transAxes, rotation=90, ha="right", va="center")
    figure.suptitle("clean images and adversarial versions, with the model's predictions")
    figure.savefig(path, dpi=100)
    return path
