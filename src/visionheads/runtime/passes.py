"""What one evaluation pass gathers (loss means and the task's metrics, synced across processes) and what it gives
back: an `Evaluation`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torchmetrics import MeanMetric, Metric, MetricCollection

from visionheads.data.catalog import Source
from visionheads.runtime.attacks import AttackedPass, Robustness
from visionheads.runtime.features import FEATURES


@dataclass
class Evaluation:
    """One evaluation pass: the data, its metrics as floats, and everything the metrics computed (for figures)."""

    source: Source
    metrics: dict[str, float]
    computed: dict[str, torch.Tensor]
    robustness: Robustness | None = None  # what an attacked evaluation adds for its figures


class LossMeans:
    """Means of named loss terms over a pass, weighted by batch size; torchmetrics states, synced across processes.

    (Cheaper than `LightningModule.log(..., on_epoch=True)` on every step, which costs about a millisecond a call.)
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.means: dict[str, MeanMetric] = {}

    def update(self, losses: dict[str, torch.Tensor], size: int) -> None:
        """Add one batch's loss terms, weighted by its `size`."""
        for name, value in losses.items():
            if name not in self.means:
                self.means[name] = MeanMetric(sync_on_compute=True).to(self.device)
            self.means[name].update(value.detach().float(), weight=size)

    def compute(self) -> dict[str, float]:
        """Each term's mean over the pass (over every process)."""
        return {name: float(mean.compute()) for name, mean in self.means.items()}


class EvaluationPass:
    """The loss means and the task's metrics over one evaluation pass (and under attack, when one is asked for)."""

    def __init__(
        self, metrics: Metric | MetricCollection, device: torch.device, attacked: AttackedPass | None = None
    ) -> None:
        self.metrics = metrics.to(device)
        self.losses = LossMeans(device)
        self.attacked = attacked

    def finish(self, metric_values: Any) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
        """The pass's values as named floats (loss means, then `metric_values` of what the metrics computed) and the
        computed tensors themselves."""
        computed = computed_dict(self.metrics)
        return self.losses.compute() | metric_values(computed), computed


def computed_dict(metrics: Metric | MetricCollection) -> dict[str, Any]:
    """What `metrics` compute, as a dict (a single Metric's value under its class name)."""
    computed = metrics.compute()
    return computed if isinstance(computed, dict) else {type(metrics).__name__: computed}


def named_totals(losses: dict[str, torch.Tensor], total: torch.Tensor) -> dict[str, torch.Tensor]:
    """`loss` is the sum; the terms are `loss_<term>` (apart from the metrics' names) where there is more than one."""
    return {"loss": total} | ({f"loss_{name}": value for name, value in losses.items()} if len(losses) > 1 else {})


def batch_length(batch: dict[str, Any]) -> int:
    """The number of samples in a batch (of images, or of cached body features)."""
    first = batch[FEATURES] if FEATURES in batch else batch["image"]
    return len(first)
