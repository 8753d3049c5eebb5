"""What the runtime needs of a task, declared once: `Task` (tasks/base.py) is the one implementation, and its
docstrings say what each hook does. The runtime knows tasks only through this protocol, so tasks/ imports the
runtime and never the reverse."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from torch.utils.data import Sampler
from torchmetrics import Metric, MetricCollection

from visionheads.data.catalog import Source
from visionheads.runtime.history import History


class TaskModel(Protocol):
    """A task's model: a body and a head, and how the body's parameters are let train or held."""

    body: nn.Module
    head: nn.Module | None

    def set_body_trainable(self, trainable: bool) -> None: ...


class PooledFeatures(Protocol):
    """A head that pools the body's maps to a vector before its `classifier` (strategy="features" caches `pooled`)."""

    classifier: nn.Module

    def pooled(self, features: list[torch.Tensor]) -> torch.Tensor: ...


class RunnableTask(Protocol):
    """A task as the runtime uses it: declarations, config, model, and the hooks data flows through."""

    name: str
    monitor: tuple[str, str]  # the validation value that picks the best epoch, and "min" or "max"
    fixed_input_size: bool  # every batch at one size (cuDNN's benchmark mode pays off)
    attackable: bool  # evaluation(attack=...) works
    tta_views: tuple[tuple[bool, float], ...]  # (mirrored, scale) views tta=True averages; () for none
    fitted_fields: tuple[str, ...]  # config fields the fit itself decides (fitted_config)
    export_parts: tuple[str, ...]  # the graphs export can write
    model: Any  # a TaskModel (any nn.Module while a compiled one stands in for it during predict)

    # ----- declarations and state ---------------------------------------------------------------------------
    @property
    def config(self) -> Any: ...  # a TaskConfig: seed, in_chans, head, pretrained, arguments() ...

    @property
    def backbone(self) -> nn.Module: ...

    @property
    def pooled_head(self) -> PooledFeatures | None: ...

    def set_config(self, **changes: Any) -> None: ...

    @classmethod
    def load(cls, path: str | Path) -> RunnableTask: ...

    def load_weights(self, path: str | Path) -> None: ...

    # ----- as a module ----------------------------------------------------------------------------------------
    def __call__(self, images: Any) -> Any: ...

    def parameters(self) -> Iterator[nn.Parameter]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def to(self, device: torch.device) -> Any: ...

    def eval(self) -> Any: ...

    # ----- data -----------------------------------------------------------------------------------------------
    def source(self, data: Any, *, fitting: bool = False) -> Source: ...

    def sample_keys(self) -> tuple[str, ...]: ...

    def train_transform(self, source: Source) -> Any: ...

    def eval_transform(self) -> Any: ...

    def to_tensors(self, pipeline: Any, sample: dict[str, Any], where: str) -> dict[str, Any]: ...

    def collate(self, samples: list[dict[str, Any]]) -> dict[str, Any]: ...

    def train_batch_sampler(self, source: Source, batch_size: int, generator: torch.Generator) -> Sampler | None: ...

    def model_inputs(self, images: Any) -> Any: ...

    def input_statistics(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]: ...

    # ----- steps, metrics, decoding ---------------------------------------------------------------------------
    def training_losses(self, batch: dict[str, Any], epoch: int) -> dict[str, torch.Tensor]: ...

    def losses(self, outputs: Any, batch: dict[str, Any]) -> dict[str, torch.Tensor]: ...

    def evaluation_outputs(self, batch: dict[str, Any]) -> Any: ...

    def evaluation_losses(self, outputs: Any, batch: dict[str, Any]) -> dict[str, torch.Tensor]: ...

    def new_metrics(self, source: Source | None) -> Metric | MetricCollection: ...

    def update_metrics(self, metrics: Any, outputs: Any, batch: dict[str, Any]) -> None: ...

    def metric_values(self, computed: dict[str, Any]) -> dict[str, float]: ...

    def prediction_outputs(self, batch: dict[str, Any]) -> Any: ...

    def undo_view(self, outputs: Any, *, mirrored: bool, size: tuple[int, int]) -> Any: ...

    def decode(self, outputs: Any, sizes: list[tuple[int, int]]) -> list[Any]: ...

    def describe_predictions(self, outputs: Any, batch: dict[str, Any]) -> list[tuple[str, bool | None]]: ...

    def export_graph(self, part: str) -> Any: ...  # an ExportGraph (runtime/export.py)

    # ----- after a fit ----------------------------------------------------------------------------------------
    def fitted_config(self, history: History) -> dict[str, Any]: ...

    def plot(self, out_dir: Any = None, data: Any = None, *, history: History | None = None) -> list[Path]: ...

    def figures(self, evaluation: Any, out_dir: Path) -> list[Path]: ...  # an Evaluation (runtime/passes.py)
