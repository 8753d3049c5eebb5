"""Training curves: losses on one axis, the other per-epoch metrics on a second."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure


def plot_history(rows: list[dict[str, float]], path: Path, *, title: str = "training") -> Path:
    """Save loss and metric curves over epochs to `path` (PNG)."""
    epochs = [row["epoch"] + 1 for row in rows]
    keys = [key for key in dict.fromkeys(k for row in rows for k in row) if key != "epoch"]
    losses = [key for key in keys if key.endswith("loss")]
    metrics = [key for key in keys if key not in losses]
    figure = Figure(figsize=(11 if metrics else 6, 4), layout="constrained")
    axes = figure.subplots(1, 2 if metrics else 1, squeeze=False)[0]
    for axis, group, label in zip(axes, (losses, metrics), ("loss", "metric"), strict=False):
        for key in group:
            axis.plot(epochs, [row.get(key, float("nan")) for row in rows], marker="o", markersize=3, label=key)
        axis.set_xlabel("epoch")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.suptitle(title)
    figure.savefig(path, dpi=110)
    return path
