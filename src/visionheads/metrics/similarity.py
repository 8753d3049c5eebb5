"""Embedding metrics: verification ROC-AUC and accuracy, recall@k retrieval, prototype (few-shot) accuracy.

`EmbeddingMetrics` gathers the embeddings and labels of every process (torchmetrics cat states) and scores them
all at once: a pair's score is the cosine similarity of its two embeddings.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from sklearn.metrics import roc_auc_score, roc_curve
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

PROTOTYPE_DRAWS = 20  # support draws averaged for prototype accuracy


class EmbeddingMetrics(Metric):
    """Scores of unit embeddings (N, D) with class labels (N,); see `embedding_scores`."""

    full_state_update = False

    def __init__(self, *, threshold: float | None = None, shots: int = 5, recall_at: Sequence[int] = (1, 5), seed=0):
        super().__init__(sync_on_compute=True)
        self.threshold, self.shots, self.recall_at, self.seed = threshold, shots, tuple(recall_at), seed
        self.add_state("embeddings", default=[], dist_reduce_fx="cat")
        self.add_state("labels", default=[], dist_reduce_fx="cat")

    def update(self, embeddings: torch.Tensor, labels: torch.Tensor) -> None:
        """embeddings: (B, D) unit vectors; labels: (B,) class indices."""
        self.embeddings.append(embeddings.detach().float())
        self.labels.append(labels.detach().long())

    def compute(self) -> dict[str, torch.Tensor]:
        embeddings = dim_zero_cat(self.embeddings).cpu().numpy()
        labels = dim_zero_cat(self.labels).cpu().numpy()
        scores = embedding_scores(embeddings, labels, threshold=self.threshold, shots=self.shots,
                                  recall_at=self.recall_at, seed=self.seed)  # fmt: skip
        return {name: torch.tensor(value, dtype=torch.float64) for name, value in scores.items()}


def embedding_scores(
    embeddings: np.ndarray,
    labels: np.ndarray,
    *,
    threshold: float | None = None,
    shots: int = 5,
    recall_at: Sequence[int] = (1, 5),
    seed: int = 0,
) -> dict[str, float]:
    """All pairs of the data, scored by cosine similarity:

    - `verification_auc`: ROC-AUC of same-class pairs against different-class ones;
    - `best_threshold` and `best_threshold_accuracy`: the similarity cut with the best balanced accuracy here (what
      a validation pass chooses), and that accuracy; `verification_accuracy`: balanced accuracy at `threshold` (one
      chosen on validation data) where given;
    - `recall@k`: share of images whose k nearest others hold one of their class;
    - `prototype_accuracy`: each class's mean embedding of `shots` random images; the rest take the class of the
      nearest mean; averaged over PROTOTYPE_DRAWS seeded draws (classes with more than `shots` images).
    """
    similarity = embeddings @ embeddings.T
    same = labels[:, None] == labels[None, :]
    upper = np.triu_indices(len(labels), k=1)
    pair_scores, pair_same = similarity[upper], same[upper]
    values: dict[str, float] = {}
    if pair_same.any() and not pair_same.all():
        values["verification_auc"] = float(roc_auc_score(pair_same, pair_scores))
        false_positive, true_positive, cuts = roc_curve(pair_same, pair_scores)
        balanced = (true_positive + 1 - false_positive) / 2
        best = int(np.argmax(balanced))
        values["best_threshold"] = float(min(cuts[best], 1.0))
        values["best_threshold_accuracy"] = float(balanced[best])
        if threshold is not None:
            said_same = pair_scores >= threshold
            values["verification_accuracy"] = float((said_same[pair_same].mean() + (~said_same[~pair_same]).mean()) / 2)
    np.fill_diagonal(similarity, -np.inf)  # an image is not its own neighbour
    order = np.argsort(-similarity, axis=1)
    for k in recall_at:
        hits = same[np.arange(len(labels))[:, None], order[:, :k]].any(axis=1)
        values[f"recall@{k}"] = float(hits.mean())
    accuracy = prototype_accuracy(embeddings, labels, shots=shots, seed=seed)
    if accuracy is not None:
        values["prototype_accuracy"] = accuracy
    return values


def prototype_accuracy(embeddings: np.ndarray, labels: np.ndarray, *, shots: int, seed: int = 0) -> float | None:
    """Nearest-class-mean accuracy with `shots` support images per class, mean of PROTOTYPE_DRAWS seeded draws."""
    classes = [c for c in np.unique(labels) if (labels == c).sum() > shots]
    if len(classes) < 2:
        return None
    rng = np.random.default_rng(seed)
    accuracies = []
    for _ in range(PROTOTYPE_DRAWS):
        prototypes, queries, truths = [], [], []
        for c in classes:
            members = rng.permutation(np.flatnonzero(labels == c))
            prototypes.append(embeddings[members[:shots]].mean(axis=0))
            queries.append(members[shots:])
            truths.append(np.full(len(members) - shots, c))
        chosen = np.asarray(classes)[np.argmax(embeddings[np.concatenate(queries)] @ np.stack(prototypes).T, axis=1)]
        accuracies.append(float((chosen == np.concatenate(truths)).mean()))
    return float(np.mean(accuracies))
