"""Image classification: pooled heads, class-folder data, cross-entropy, accuracy/top-5/macro-F1/confusion."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix, MulticlassF1Score

from visionheads.data.balance import label_class_counts
from visionheads.data.catalog import Source
from visionheads.data.folders import ClassFolders
from visionheads.data.transforms import eval_pipeline, train_pipeline
from visionheads.errors import ConfigError, DataError
from visionheads.heads import PooledLinear, PooledMLP
from visionheads.runtime.explain import Target
from visionheads.runtime.passes import Evaluation
from visionheads.runtime.registry import register_task
from visionheads.tasks.base import Task
from visionheads.tasks.config import TaskConfig
from visionheads.tasks.weighting import ClassWeights, checked_class_weights, class_weight_tensor, fit_class_weights


@dataclass(frozen=True)
class ClassificationConfig(TaskConfig):
    """Classification arguments: those of every task, plus these."""

    label_smoothing: float = 0.0
    hflip: bool | None = None  # mirror training images; None: where the data allows it (not digits)
    class_weights: ClassWeights = None  # cross-entropy weight per class, or "median_frequency" of the training labels

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "class_weights", checked_class_weights(self.class_weights))


@register_task
class ClassificationTask(Task):
    """`Task("classification", backbone=..., num_classes=K)`: predicts one of K classes per image."""

    name = "classification"
    config_type = ClassificationConfig
    monitor = ("val_accuracy", "max")
    attackable = True
    tta_views = ((False, 1.0), (True, 1.0))  # the image and its mirror: no test-time mirror for digits or text
    data_key = "label"
    # 1. heads
    heads = {"linear": PooledLinear, "mlp": PooledMLP}
    default_head = "linear"

    def head_outputs(self) -> int | None:
        return self.num_classes

    # 2. data
    def sample_keys(self) -> tuple[str, ...]:
        return ("image", "label")

    def source_from_path(self, path: Path, channels: int) -> Source:
        folders = ClassFolders(path, channels=channels)
        return Source(folders, str(path), class_names=folders.class_names)

    def check_data(self, source: Source, *, fitting: bool) -> None:
        names = source.class_names
        labels = _known_labels(source.dataset)
        self.check_class_names(source, fitting=fitting)
        count = len(names) if names is not None else (int(labels.max()) + 1 if labels is not None else None)
        if self.num_classes is None:
            if not fitting or count is None:
                raise ConfigError(f"{source.description}: pass num_classes; it cannot be read from this data")
            self.set_config(num_classes=count)
        elif count is not None and (count > self.num_classes or (names is not None and count != self.num_classes)):
            raise ConfigError(
                f"num_classes={self.num_classes} but {source.description} has {count} classes"
                f"{' (' + ', '.join(names) + ')' if names else ''}; drop num_classes or set it to {count}"
            )
        if labels is not None and len(labels) and labels.min() < 0:
            raise DataError(f"{source.description}: labels must be 0..{self.num_classes - 1}, found {labels.min()}")
        if self.class_names is None:
            self.set_config(class_names=tuple(names or [str(i) for i in range(self.num_classes)]))
        if fitting:
            counts = partial(label_class_counts, source.dataset, self.num_classes)
            weights = fit_class_weights(self.config.class_weights, self.num_classes, counts, source.description)
            self.set_config(class_weights=weights)

    def train_transform(self, source: Source) -> Any:
        hflip = self.config.hflip
        flips = source.flips_ok if hflip is None else bool(hflip)
        return train_pipeline(self.config.image_size, flips=flips)

    def eval_transform(self) -> Any:
        return eval_pipeline(self.config.image_size)

    def to_tensors(self, pipeline: Any, sample: dict[str, Any], where: str) -> dict[str, torch.Tensor]:
        label = sample["label"]
        if not isinstance(label, (int, np.integer)) or not 0 <= int(label) < self.num_classes:
            raise DataError(f"{where}['label']: {label!r} is not a class index in 0..{self.num_classes - 1}")
        return {"image": pipeline(image=sample["image"])["image"], "label": torch.tensor(int(label))}

    # 3. losses
    def losses(self, outputs: torch.Tensor, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """outputs: logits (B, K); batch["label"]: (B,) class indices."""
        logits, smoothing = outputs.float(), self.config.label_smoothing
        weight = class_weight_tensor(self.config.class_weights, logits)
        return {"cross_entropy": F.cross_entropy(logits, batch["label"], weight=weight, label_smoothing=smoothing)}

    # 4. metrics: torchmetrics, dataset-wide under DDP
    def new_metrics(self, source: Source | None) -> MetricCollection:
        classes = self.num_classes
        metrics = {
            "accuracy": MulticlassAccuracy(classes, average="micro", validate_args=False),
            "macro_f1": MulticlassF1Score(classes, average="macro", validate_args=False),
            "confusion": MulticlassConfusionMatrix(classes, validate_args=False),
        }
        if classes >= 5:
            metrics["top5_accuracy"] = MulticlassAccuracy(classes, top_k=5, average="micro", validate_args=False)
        # No compute groups: torchmetrics shares one state between metrics whose states are equal after the first
        # batch, and after a batch without a top-1 error top-5 accuracy's equal macro-F1's, so it went on counting
        # top-1 hits (the demo model's test top-5 read 0.9917, its top-1, instead of 1.0)
        return MetricCollection(metrics, compute_groups=False)

    def update_metrics(self, metrics: MetricCollection, outputs: torch.Tensor, batch: dict[str, Any]) -> None:
        metrics.update(outputs.detach().float(), batch["label"])

    # 5. predictions
    def undo_view(self, outputs: torch.Tensor, *, mirrored: bool, size: tuple[int, int]) -> torch.Tensor:
        """outputs: logits (B, K), the same for a mirrored view."""
        return outputs

    def decode(self, outputs: torch.Tensor, sizes: list[tuple[int, int]]) -> list[dict[str, Any]]:
        probabilities = outputs.float().softmax(dim=1).cpu().numpy()
        names = self.class_names or [str(i) for i in range(outputs.shape[1])]
        return [
            {"label": names[int(p.argmax())], "index": int(p.argmax()), "score": float(p.max()), "probs": p}
            for p in probabilities
        ]

    def export_outputs(self, batch: dict[str, Any], part: str) -> dict[str, torch.Tensor]:
        """probs (B, K): the softmax of the logits."""
        return {"probs": self.prediction_outputs(batch).float().softmax(dim=1)}

    def describe_predictions(self, outputs: torch.Tensor, batch: dict[str, Any]) -> list[tuple[str, bool | None]]:
        names = self.class_names or [str(i) for i in range(outputs.shape[1])]
        predicted, true = outputs.argmax(dim=1).tolist(), batch["label"].tolist()
        return [
            (names[p] if p == t else f"{names[p]} (true {names[t]})", p == t)
            for p, t in zip(predicted, true, strict=True)
        ]

    # 6. figures
    def figures(self, evaluation: Evaluation, out_dir: Path) -> list[Path]:
        from visionheads.viz.confusion import plot_confusion

        matrix = evaluation.computed["confusion"].cpu().numpy()
        return [plot_confusion(matrix, self.class_names, out_dir / "confusion_matrix.png")]

    # 7. explanations: a class's logit, by default the predicted class's
    def explanation_targets(self, outputs: torch.Tensor, target: int | str | None) -> list[Target]:
        """outputs: logits (B, K). Returns: per image, its logit of `target` (default: its predicted class)."""
        chosen = [self.class_index(target)] * len(outputs) if target is not None else outputs.argmax(dim=1).tolist()
        return [partial(_logit, index=int(index)) for index in chosen]


def _logit(logits: torch.Tensor, *, index: int) -> torch.Tensor:
    return logits[index]


def _known_labels(dataset: Any) -> np.ndarray | None:
    # Labels that can be read without decoding images: our adapters, torchvision's `targets`, subsets of them.
    if isinstance(dataset, torch.utils.data.Subset):
        parent = _known_labels(dataset.dataset)
        return None if parent is None else parent[np.asarray(dataset.indices)]
    for attribute in ("labels", "targets"):
        value = getattr(dataset, attribute, None)
        if isinstance(value, dict):
            value = value.get("label")
        if value is not None and not callable(value):
            return np.asarray(value)
    return None
