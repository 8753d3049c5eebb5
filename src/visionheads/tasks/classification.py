"""Image classification: pooled heads, class-folder data, cross-entropy, accuracy/top-5/macro-F1/confusion."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, top_k_accuracy_score
from torch.nn import functional as F

from visionheads.data.folders import ClassFolders
from visionheads.data.sources import Source
from visionheads.data.transforms import eval_pipeline, train_pipeline
from visionheads.errors import ConfigError, DataError
from visionheads.heads import PooledLinear, PooledMLP
from visionheads.tasks.base import Task, register_task


@register_task
class ClassificationTask(Task):
    """`Task("classification", backbone=..., num_classes=K)`: predicts one of K classes per image."""

    name = "classification"
    # 1. heads
    heads = {"linear": PooledLinear, "mlp": PooledMLP}
    default_head = "linear"
    option_defaults = {"dropout": 0.0, "hidden": 256, "pool_size": 1, "label_smoothing": 0.0, "hflip": None}
    monitor = ("val_accuracy", "max")
    target_key = "label"

    def head_outputs(self) -> int | None:
        return self.num_classes

    # 2. data
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
            self.num_classes = count
            self.build_head()
        elif count is not None and (count > self.num_classes or (names is not None and count != self.num_classes)):
            raise ConfigError(
                f"num_classes={self.num_classes} but {source.description} has {count} classes"
                f"{' (' + ', '.join(names) + ')' if names else ''}; drop num_classes or set it to {count}"
            )
        if labels is not None and len(labels) and labels.min() < 0:
            raise DataError(f"{source.description}: labels must be 0..{self.num_classes - 1}, found {labels.min()}")
        if self.class_names is None:
            self.class_names = names or [str(i) for i in range(self.num_classes)]

    def train_transform(self, source: Source) -> Any:
        flips = source.flips_ok if self.options["hflip"] is None else bool(self.options["hflip"])
        return train_pipeline(self.image_size, self.mean, self.std, flips=flips, seed=self.seed)

    def eval_transform(self) -> Any:
        return eval_pipeline(self.image_size, self.mean, self.std)

    def to_tensors(self, pipeline: Any, sample: dict[str, Any], where: str) -> dict[str, torch.Tensor]:
        label = sample["label"]
        if not isinstance(label, (int, np.integer)) or not 0 <= int(label) < self.num_classes:
            raise DataError(f"{where}['label']: {label!r} is not a class index in 0..{self.num_classes - 1}")
        return {"image": pipeline(image=sample["image"])["image"], "label": torch.tensor(int(label))}

    # 3. loss
    def compute_loss(self, outputs: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return F.cross_entropy(outputs, batch["label"], label_smoothing=self.options["label_smoothing"])

    # 4. metrics
    def new_metrics(self) -> ClassificationMetrics:
        return ClassificationMetrics(self.num_classes)

    # 5. predictions
    def decode(self, outputs: torch.Tensor) -> list[dict[str, Any]]:
        probabilities = outputs.float().softmax(dim=1).cpu().numpy()
        names = self.class_names or [str(i) for i in range(outputs.shape[1])]
        return [
            {"label": names[int(p.argmax())], "index": int(p.argmax()), "score": float(p.max()), "probs": p}
            for p in probabilities
        ]

    # 6. plots
    def task_plots(self, out_dir: Path) -> list[Path]:
        from visionheads.viz.confusion import plot_confusion

        if not isinstance(self.last_evaluation, ClassificationMetrics) or not self.last_evaluation.count:
            return []
        matrix = self.last_evaluation.confusion()
        return [plot_confusion(matrix, self.class_names, out_dir / "confusion_matrix.png")]


class ClassificationMetrics:
    """Collects scores over batches; scikit-learn computes the metrics once at the end."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self._scores: list[np.ndarray] = []
        self._labels: list[np.ndarray] = []

    @property
    def count(self) -> int:
        return sum(len(labels) for labels in self._labels)

    def update(self, outputs: torch.Tensor, batch: dict[str, torch.Tensor]) -> None:
        self._scores.append(outputs.detach().float().softmax(dim=1).cpu().numpy())
        self._labels.append(batch["label"].detach().cpu().numpy())

    def compute(self) -> dict[str, float]:
        scores, labels = np.concatenate(self._scores), np.concatenate(self._labels)
        predicted = scores.argmax(axis=1)
        classes = np.arange(self.num_classes)
        result = {
            "accuracy": float(accuracy_score(labels, predicted)),
            "macro_f1": float(f1_score(labels, predicted, labels=classes, average="macro", zero_division=0)),
        }
        if self.num_classes >= 5:
            result["top5_accuracy"] = float(top_k_accuracy_score(labels, scores, k=5, labels=classes))
        return result

    def confusion(self) -> np.ndarray:
        """Counts (K, K): rows are true classes, columns predicted classes."""
        labels = np.concatenate(self._labels)
        predicted = np.concatenate(self._scores).argmax(axis=1)
        return confusion_matrix(labels, predicted, labels=np.arange(self.num_classes))


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
