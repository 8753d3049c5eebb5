"""Siamese figures: a 2-D map of embeddings by class (unseen classes marked), and the similarity of pairs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from sklearn.decomposition import PCA


def plot_embedding_map(
    embeddings: np.ndarray, labels: np.ndarray, names: list[str], unseen: list[bool], path: Path
) -> Path:
    """PCA of the embeddings to 2-D, a colour per class; classes never seen in training drawn as crosses."""
    points = PCA(n_components=2, random_state=0).fit_transform(embeddings)
    figure = Figure(figsize=(6.5, 5.2), layout="constrained")
    axis = figure.subplots()
    palette = colormaps["tab10" if len(names) <= 10 else "tab20"]
    for label in np.unique(labels):
        chosen = labels == label
        new = bool(unseen[label]) if label < len(unseen) else False
        axis.scatter(*points[chosen].T, s=14 if new else 9, marker="x" if new else "o", color=palette(int(label) % 20),
                     label=f"{names[label]}{' (unseen)' if new else ''}", alpha=0.8)  # fmt: skip
    axis.set(title="embeddings (PCA)", xticks=[], yticks=[])
    axis.legend(fontsize=7, loc="best", markerscale=1.5)
    figure.savefig(path, dpi=100)
    return path


def plot_pair_distances(embeddings: np.ndarray, labels: np.ndarray, threshold: float | None, path: Path) -> Path:
    """Histograms of the cosine similarity of same-class and different-class pairs, with the chosen threshold."""
    similarity = embeddings @ embeddings.T
    upper = np.triu_indices(len(labels), k=1)
    same = (labels[:, None] == labels[None, :])[upper]
    figure = Figure(figsize=(6, 3.8), layout="constrained")
    axis = figure.subplots()
    bins = np.linspace(-1, 1, 81)
    axis.hist(similarity[upper][same], bins=bins, density=True, alpha=0.6, label="same class")
    axis.hist(similarity[upper][~same], bins=bins, density=True, alpha=0.6, label="different classes")
    if threshold is not None:
        axis.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.3f}")
    axis.set(xlabel="cosine similarity", ylabel="density", title="pairs of the evaluated data")
    axis.legend(fontsize=8)
    figure.savefig(path, dpi=100)
    return path
