"""Siamese similarity: one body and an embedding head shared by both inputs of a pair; P x K batches with
contrastive, triplet or normalised-softmax losses; verification ROC-AUC, recall@k, prototype accuracy on classes
never seen in training."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from visionheads.backbones import Backbone
from visionheads.data.catalog import Source
from visionheads.data.folders import ClassFolders
from visionheads.data.sampling import PKBatchSampler, labels_of
from visionheads.data.transforms import eval_pipeline, train_pipeline
from visionheads.errors import ConfigError, DataError, one_of
from visionheads.heads.embedding import EmbeddingHead
from visionheads.metrics.similarity import EmbeddingMetrics
from visionheads.runtime.features import FEATURES
from visionheads.runtime.history import History
from visionheads.runtime.passes import Evaluation
from visionheads.runtime.registry import register_task
from visionheads.tasks.base import Task
from visionheads.tasks.config import TaskConfig
from visionheads.tasks.model import HeadOnBody

LOSSES = ("norm_softmax", "triplet", "contrastive")
MINING = ("hard", "all")
EMBED_FROM = ("projection", "pooled")
DEFAULT_MARGINS = {"triplet": 0.2, "contrastive": 1.0}  # distances of unit vectors lie in [0, 2]


@dataclass(frozen=True)
class SiameseConfig(TaskConfig):
    """Siamese arguments: those of every task, plus these (`hidden_dim`, `dropout` sit with the head)."""

    embedding_dim: int = 64
    loss: str = "norm_softmax"  # norm_softmax (a cosine classifier, NormFace), triplet, or contrastive
    margin: float | None = None  # triplet / contrastive; None: 0.2 / 1.0
    mining: str = "hard"  # triplet: "hard" (hardest positive and negative per anchor) or "all" (every triplet)
    temperature: float = 0.05  # norm_softmax: cosine logits divided by this
    images_per_class: int = 4  # K of the P x K training batches (P = batch_size // K)
    shots: int = 5  # support images per class for prototype accuracy
    augment: bool = True  # affine and brightness jitter in training
    threshold: float | None = None  # the cosine cut for "same", chosen on validation data by fit
    embed_from: str = "projection"  # what embed() and the metrics use: the head's "projection", or the "pooled" map

    def __post_init__(self) -> None:
        super().__post_init__()
        one_of("loss", self.loss, LOSSES)
        one_of("mining", self.mining, MINING)
        one_of("embed_from", self.embed_from, EMBED_FROM)
        if self.images_per_class < 2:
            raise ConfigError(f"images_per_class={self.images_per_class}; a batch needs 2 or more per class (pairs)")


class SiameseModel(HeadOnBody):
    """The embedding head on the body, and (for the norm_softmax loss) one learnt proxy per training class."""

    def __init__(self, body: Backbone, head: EmbeddingHead, proxies: nn.Linear | None) -> None:
        super().__init__(body, head)
        self.proxies = proxies  # (classes, embedding_dim) weights, or None for losses that need none


@register_task
class SiameseTask(Task):
    """`Task("siamese", backbone=..., embedding_dim=64)`: how alike two images are, and classes from a few examples."""

    name = "siamese"
    config_type = SiameseConfig
    monitor = ("val_prototype_accuracy", "max")
    fitted_fields = ("threshold",)
    # 1. heads: pooled deepest map -> projection -> unit vector; the same weights for both inputs of a pair
    heads = {"embedding": EmbeddingHead}
    default_head = "embedding"

    def head_outputs(self) -> tuple[int, int]:
        return (self.config.embedding_dim, self.num_classes or 0)  # the proxies follow the training classes

    def build_model(self, body: Backbone, *, weights: str | Path | None = None) -> SiameseModel:
        head = EmbeddingHead(body.channels, body.strides, self.config.embedding_dim, **self.head_arguments(body))
        proxies = None
        if self.config.loss == "norm_softmax" and self.num_classes:
            proxies = nn.Linear(self.config.embedding_dim, self.num_classes, bias=False)  # one per class
        return SiameseModel(body, head, proxies)

    # 2. data: labelled images; P x K batches in training
    def sample_keys(self) -> tuple[str, ...]:
        return ("image", "label")

    def source_from_path(self, path: Path, channels: int) -> Source:
        dataset = ClassFolders(path, channels=channels)
        return Source(dataset, str(path), class_names=dataset.class_names)

    def check_data(self, source: Source, *, fitting: bool) -> None:
        # Evaluation data may hold classes never seen in training: that is what the task is for.
        if fitting:
            self.check_class_names(source, fitting=True)
            labels = labels_of(source.dataset)
            if self.class_names is None:
                names = source.class_names or [str(i) for i in range(int(labels.max()) + 1)]
                self.set_config(class_names=tuple(names))
            if labels.min() < 0 or labels.max() >= self.num_classes:
                raise DataError(
                    f"{source.description}: labels span {int(labels.min())}..{int(labels.max())} but there are "
                    f"{self.num_classes} classes ({', '.join(self.class_names)}); labels are 0..{self.num_classes - 1}"
                )

    def train_transform(self, source: Source) -> Any:
        config = self.config
        if not config.augment:
            return self.eval_transform()
        return train_pipeline(config.image_size, flips=source.flips_ok)

    def eval_transform(self) -> Any:
        return eval_pipeline(self.config.image_size)

    def to_tensors(self, pipeline: Any, sample: dict[str, Any], where: str) -> dict[str, torch.Tensor]:
        label = sample["label"]
        if isinstance(label, (bool, float)) or not isinstance(label, (int, np.integer)) or label < 0:
            raise DataError(f"{where}['label']: {label!r}; a label is a class index >= 0")
        return {"image": pipeline(image=sample["image"])["image"], "label": torch.tensor(int(label))}

    def train_batch_sampler(self, source: Source, batch_size: int, generator: torch.Generator) -> PKBatchSampler:
        """P classes x K images (`images_per_class`) per training batch, P = batch_size // K, drawn with `generator`."""
        per_class = self.config.images_per_class
        return PKBatchSampler(labels_of(source.dataset), max(2, batch_size // per_class), per_class, generator)

    # 3. losses, on the embeddings of a P x K batch
    def losses(self, outputs: torch.Tensor, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """outputs: unit embeddings (B, D); batch["label"]: (B,)."""
        config, labels = self.config, batch["label"]
        margin = config.margin if config.margin is not None else DEFAULT_MARGINS.get(config.loss, 0.0)
        if config.loss == "norm_softmax":
            proxies = self.model.proxies
            if proxies is None or int(labels.max()) >= proxies.out_features:
                raise DataError(
                    f"label {int(labels.max())} but the task knows {self.num_classes or 0} training classes "
                    f"({self.class_names}); give class names that cover every label"
                )
            return {"norm_softmax": normalised_softmax(outputs, labels, proxies.weight, config.temperature)}
        if config.loss == "triplet":
            return {"triplet": triplet_loss(outputs, labels, margin, hard=config.mining == "hard")}
        return {"contrastive": contrastive_loss(outputs, labels, margin)}

    def evaluation_losses(self, outputs: torch.Tensor, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        return {}  # evaluation batches are not P x K and may hold unseen classes: judged by the metrics alone

    def evaluation_outputs(self, batch: dict[str, Any]) -> torch.Tensor:
        """The embeddings judged and returned: the projection's, or (`embed_from="pooled"`) the body's pooled deepest
        map, L2-normalised: the loss shapes the projection to the training classes, and the map under it carries
        more of what tells classes never seen apart (docs/siamese.md)."""
        if self.config.embed_from == "projection":
            return self.model_outputs(batch)
        pooled = batch[FEATURES] if FEATURES in batch else self.head.pooled(self.backbone(batch["image"]))
        return F.normalize(pooled.float(), dim=1)

    # 4. metrics: all pairs of the evaluated data
    def new_metrics(self, source: Source | None) -> EmbeddingMetrics:
        return EmbeddingMetrics(threshold=self.config.threshold, shots=self.config.shots, seed=self.config.seed)

    def update_metrics(self, metrics: EmbeddingMetrics, outputs: torch.Tensor, batch: dict[str, Any]) -> None:
        metrics.update(outputs.float(), batch["label"])

    def fitted_config(self, history: History) -> dict[str, Any]:
        """With validation data, the "same" threshold is the one the best epoch's validation chose (best balanced
        accuracy), the epoch whose weights the task keeps. Saved with the task (`task.save`)."""
        threshold = history.best.get("val_best_threshold")
        return {"threshold": float(threshold)} if threshold is not None else {}

    # 5. predictions: embeddings (predict); pairs as same/different with their similarity (verify)
    def decode(self, outputs: torch.Tensor, sizes: list[tuple[int, int]]) -> list[np.ndarray]:
        """One unit embedding (D,) per image."""
        return list(outputs.float().cpu().numpy())

    def export_outputs(self, batch: dict[str, Any], part: str) -> dict[str, torch.Tensor]:
        """embeddings (B, D): unit vectors, as predict gives them."""
        return {"embeddings": self.prediction_outputs(batch).float()}

    def verify(self, pairs: list[tuple[Any, Any]], *, batch_size: int = 64) -> list[dict[str, Any]]:
        """Whether the two images of each pair `(a, b)` show the same class: `{"same": bool, "score": cosine
        similarity}`, "same" at or above the threshold fit chose (0.5 before a fit)."""
        if not all(isinstance(pair, tuple) and len(pair) == 2 for pair in pairs):
            raise DataError("verify() takes a list of pairs (a, b) of images")
        scores = self.similarity([a for a, _ in pairs], [b for _, b in pairs], batch_size=batch_size)
        cut = self.config.threshold if self.config.threshold is not None else 0.5
        return [{"same": bool(score >= cut), "score": float(score)} for score in scores]

    def embed(self, images: Any, *, batch_size: int = 64) -> np.ndarray:
        """Unit embeddings (N, D) of images (paths, arrays or a batch): `predict`'s results stacked."""
        return np.stack(self.predict(images, batch_size=batch_size))

    def similarity(self, a: Any, b: Any, *, batch_size: int = 64) -> np.ndarray:
        """Cosine similarity (N,) of the images of `a` and `b`, pair by pair (1: alike, -1: opposite)."""
        first, second = self.embed(a, batch_size=batch_size), self.embed(b, batch_size=batch_size)
        if len(first) != len(second):
            raise DataError(f"similarity: {len(first)} images in a but {len(second)} in b; give pairs")
        return (first * second).sum(axis=1)

    def identify(self, queries: Any, support: Any, support_labels: Any, *, k: int | None = None) -> list[dict]:
        """Each query's label: that of the nearest class mean of the support embeddings (`k` images per label at
        most; None: all), with its similarity. Labels need not be classes seen in training."""
        labels = np.asarray(support_labels)
        shots = self.embed(support)
        if len(shots) != len(labels):
            raise DataError(f"identify: {len(shots)} support images but {len(labels)} support labels")
        names = list(dict.fromkeys(labels.tolist()))
        means = np.stack([shots[labels == name][:k].mean(axis=0) for name in names])
        means /= np.linalg.norm(means, axis=1, keepdims=True)
        scores = self.embed(queries) @ means.T
        return [
            {"label": names[int(i)], "score": float(row[i])} for row, i in zip(scores, scores.argmax(1), strict=True)
        ]

    # 6. figures: a 2-D map of the embeddings; distances of same and different pairs with the threshold
    def figures(self, evaluation: Evaluation, out_dir: Path) -> list[Path]:
        from visionheads.viz.siamese import plot_embedding_map, plot_pair_distances

        dataset = evaluation.source.dataset
        count = min(len(dataset), 1000)
        samples = [dataset[i] for i in range(count)]
        embeddings = self.embed([s["image"] for s in samples])
        labels = np.asarray([int(s["label"]) for s in samples])
        names = evaluation.source.class_names or [str(i) for i in range(int(labels.max()) + 1)]
        seen = set(self.class_names or [])
        return [
            plot_embedding_map(
                embeddings, labels, names, [name not in seen for name in names], out_dir / "embeddings.png"
            ),
            plot_pair_distances(embeddings, labels, self.config.threshold, out_dir / "pair_similarity.png"),
        ]


def _distances(embeddings: torch.Tensor) -> torch.Tensor:
    # Unit vectors: |a - b|^2 = 2 - 2 a.b; clamped so the square root has a gradient at 0.
    return (2 - 2 * embeddings.float() @ embeddings.float().T).clamp(min=1e-12).sqrt()


def normalised_softmax(embeddings: torch.Tensor, labels: torch.Tensor, proxies: torch.Tensor, temperature: float):
    """Cross-entropy of cosine similarities to one learnt proxy per class, divided by `temperature` (NormFace)."""
    logits = embeddings.float() @ F.normalize(proxies.float(), dim=1).T / temperature
    return F.cross_entropy(logits, labels)


def triplet_loss(embeddings: torch.Tensor, labels: torch.Tensor, margin: float, *, hard: bool) -> torch.Tensor:
    """Triplet margin loss inside the batch: per anchor its hardest positive and negative (`hard`), or the mean
    over all triplets that still violate the margin (batch-all)."""
    distances = _distances(embeddings)
    same = labels[:, None] == labels[None, :]
    other = ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    positive, negative = same & other, ~same
    if hard:
        hardest_positive = distances.masked_fill(~positive, 0).max(dim=1).values
        hardest_negative = distances.masked_fill(~negative, float("inf")).min(dim=1).values
        valid = positive.any(dim=1) & negative.any(dim=1)
        return F.relu(hardest_positive - hardest_negative + margin)[valid].mean()
    violations = distances[:, :, None] - distances[:, None, :] + margin  # (anchor, positive, negative)
    mask = positive[:, :, None] & negative[:, None, :]
    values = F.relu(violations[mask])
    active = values > 1e-12
    return values[active].mean() if active.any() else values.sum() * 0


def contrastive_loss(embeddings: torch.Tensor, labels: torch.Tensor, margin: float) -> torch.Tensor:
    """Hadsell et al.: squared distance of same-class pairs, squared shortfall from `margin` of different ones."""
    distances = _distances(embeddings)
    same = labels[:, None] == labels[None, :]
    other = ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    pulled = distances[same & other].square().mean()
    pushed = F.relu(margin - distances[~same]).square().mean()
    return (pulled + pushed) / 2
