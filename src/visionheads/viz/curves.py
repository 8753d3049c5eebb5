"""Training curves: losses, shares in [0, 1] (accuracies) and other metrics (errors) on separate axes."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator


def plot_history(rows: list[dict[str, float]], path: Path, *, title: str = "training") -> Path:
    """Save loss and metric curves over epochs to `path` (PNG); a value recorded on some epochs only (validation
    every few epochs) is drawn through the epochs that have it."""
    keys = [key for key in dict.fromkeys(k for row in rows for k in row) if key != "epoch"]
    losses = [key for key in keys if key.endswith("loss")]
    metrics = [key for key in keys if key not in losses]
    shares = [key for key in metrics if all(0 <= row.get(key, 0) <= 1 for row in rows)]
    others = [key for key in metrics if key not in shares]
    groups = [(group, label) for group, label in ((losses, "loss"), (shares, "share"), (others, "value")) if group]
    figure = Figure(figsize=(5 * len(groups) + 1, 4), layout="constrained")
    axes = figure.subplots(1, len(groups), squeeze=False)[0]
    for axis, (group, label) in zip(axes, groups, strict=True):
        for key in group:
            epochs = [int(row["epoch"]) for row in rows if key in row]  # numbered from 1, as a person reads them
            axis.plot(epochs, [row[key] for row in rows if key in row], marker="o", markersize=3, label=key)
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))  # whole epochs only
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.suptitle(title)
    figure.savefig(path, dpi=110)
    return path


def plot_comparison(histories: dict[str, list[dict[str, float]]], monitor: str, path: Path) -> Path:
    """Save the validation loss and `monitor` of several fits (e.g. one per strategy) over epochs on one figure."""
    keys = [key for key in ("val_loss", monitor) if any(key in row for rows in histories.values() for row in rows)]
    figure = Figure(figsize=(5 * max(1, len(keys)) + 1, 4), layout="constrained")
    axes = figure.subplots(1, max(1, len(keys)), squeeze=False)[0]
    for axis, key in zip(axes, keys, strict=False):
        for label, rows in histories.items():
            epochs = [int(row["epoch"]) for row in rows if key in row]
            axis.plot(epochs, [row[key] for row in rows if key in row], marker="o", markersize=3, label=label)
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_ylabel(key)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.suptitle("validation curves by strategy")
    figure.savefig(path, dpi=110)
    return path
