"""Adding a task takes one module and its registration: this test-only task counts the objects of each class in
the built-in `shapes` scenes, from one target dict per image (as torchvision's detectors take them), with a
two-term loss. docs/index.md shows it as the template for a new task."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch.nn import functional as F
from torchmetrics import MeanAbsoluteError, MetricCollection
from torchmetrics.classification import MultilabelAccuracy

import visionheads as vh
from visionheads.data import COCOSubset, Source
from visionheads.data.transforms import eval_pipeline
from visionheads.heads import PooledLinear
from visionheads.tasks import Task, TaskConfig, register_task

from contract import check_training_step, input_size


@dataclass(frozen=True)
class CountConfig(TaskConfig):
    count_weight: float = 0.5  # loss = BCE of which classes are present + count_weight * Poisson NLL of the count


@register_task
class CountTask(Task):
    """`Task("count")`: which classes of object an image holds, and how many objects in all."""

    name = "count"
    config_type = CountConfig
    monitor = ("val_presence_accuracy", "max")
    # 1. heads: a presence logit per class and the log of the expected number of objects
    heads = {"linear": PooledLinear}
    default_head = "linear"

    def head_outputs(self) -> int | None:
        return self.num_classes + 1 if self.num_classes else None

    # 2. data: COCO scenes; a target dict per image, kept as a list by collate
    def sample_keys(self) -> tuple[str, ...]:
        return ("image", "labels")

    def source_from_path(self, path: Path, channels: int) -> Source:
        dataset = COCOSubset(path, channels=channels)
        return Source(dataset, str(path), class_names=dataset.class_names)

    def check_data(self, source: Source, *, fitting: bool) -> None:
        if self.num_classes is None:
            self.set_config(class_names=tuple(source.class_names))

    def train_transform(self, source: Source) -> Any:
        return self.eval_transform()

    def eval_transform(self) -> Any:
        return eval_pipeline(self.config.image_size)

    def to_tensors(self, pipeline: Any, sample: dict[str, Any], where: str) -> dict[str, Any]:
        labels = torch.as_tensor(np.asarray(sample["labels"], dtype=np.int64))
        return {"image": pipeline(image=sample["image"])["image"], "target": {"labels": labels}}

    def collate(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        batch = {"image": torch.stack([s["image"] for s in samples])}
        if "target" in samples[0]:  # prediction batches hold images only
            batch["targets"] = [s["target"] for s in samples]
        return batch

    # 3. losses: two terms, logged as train_loss_presence and train_loss_count beside their sum, train_loss
    def losses(self, outputs: torch.Tensor, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        presence, log_count = outputs.float()[:, :-1], outputs.float()[:, -1]
        counts = self.counts(batch)
        return {
            "presence": F.binary_cross_entropy_with_logits(presence, (counts > 0).float()),
            "count": self.config.count_weight * F.poisson_nll_loss(log_count, counts.sum(dim=1), full=True),
        }

    def counts(self, batch: dict[str, Any]) -> torch.Tensor:
        """(B, K) object counts per class from the list of target dicts."""
        return torch.stack([torch.bincount(t["labels"], minlength=self.num_classes) for t in batch["targets"]]).float()

    # 4. metrics
    def new_metrics(self, source: Source | None) -> MetricCollection:
        return MetricCollection(
            {"presence_accuracy": MultilabelAccuracy(self.num_classes), "count_mae": MeanAbsoluteError()}
        )

    def update_metrics(self, metrics: MetricCollection, outputs: torch.Tensor, batch: dict[str, Any]) -> None:
        counts = self.counts(batch)
        metrics["presence_accuracy"].update(outputs[:, :-1].detach(), (counts > 0).int())
        metrics["count_mae"].update(outputs[:, -1].detach().exp(), counts.sum(dim=1))

    # 5. predictions
    def decode(self, outputs: torch.Tensor, sizes: list[tuple[int, int]]) -> list[dict[str, Any]]:
        present = (outputs[:, :-1] > 0).tolist()
        counts = outputs[:, -1].exp().tolist()
        names = self.class_names
        return [
            {"classes": [n for n, p in zip(names, row, strict=True) if p], "count": c}
            for row, c in zip(present, counts, strict=True)
        ]


pytestmark = pytest.mark.template


def scenes(count: int, seed: int) -> list[dict[str, Any]]:
    """Dark 32x32 scenes with 0-3 red (label 1) and 0-3 green (label 2) 6x6 squares; one labels list each."""
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(count):
        image = rng.integers(0, 40, (32, 32, 3)).astype(np.uint8)
        labels = [1] * int(rng.integers(0, 4)) + [2] * int(rng.integers(0, 4))
        for label in labels:
            y, x = rng.integers(0, 26, size=2)
            image[y : y + 6, x : x + 6] = (220, 30, 30) if label == 1 else (30, 220, 30)
        samples.append({"image": image, "labels": labels})
    return samples


def test_a_new_task_trains_with_list_targets_and_two_logged_loss_terms():
    task = vh.Task("count", backbone="simple_cnn", class_names=["background", "red", "green"], image_size=32)
    history = task.fit(scenes(128, seed=0), scenes(32, seed=1), epochs=10, batch_size=16, lr=5e-3, plots=False)
    logged = {"train_loss", "train_loss_presence", "train_loss_count", "val_loss", "val_loss_count"}
    assert logged | {"val_presence_accuracy", "val_count_mae"} <= set(history.keys())
    assert history["train_loss"][-1] < 0.5 * history["train_loss"][0]
    test = scenes(64, seed=2)
    present = np.stack([np.bincount(s["labels"], minlength=3) > 0 for s in test])
    majority = np.maximum(present.mean(axis=0), 1 - present.mean(axis=0)).mean()  # the best constant guess
    metrics = task.evaluate(test)
    assert metrics["presence_accuracy"] > majority + 0.05
    assert metrics["count_mae"] < 0.6 * np.abs([len(s["labels"]) - 3 for s in test]).mean()  # vs. guessing 3
    (prediction,) = task.predict(test[0]["image"])
    assert set(prediction) == {"classes", "count"}


def test_the_new_task_honours_the_shared_contract(bodies):
    body = bodies("resnet18")
    task = vh.Task("count", backbone=body, class_names=["background", "red", "green"], image_size=input_size(body))
    samples = [dict(sample, image=np.repeat(np.repeat(sample["image"], 2, 0), 2, 1)) for sample in scenes(2, seed=3)]
    assert set(check_training_step(task, samples)) == {"presence_accuracy", "count_mae"}
