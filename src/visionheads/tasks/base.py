"""The shared Task: a LightningModule that owns the steps, the optimiser, fit/evaluate/predict/save/load.

A task module subclasses `Task` once and fills in, top to bottom: its heads, how it adapts data, its loss,
its metrics, how it decodes outputs, and its plots. Everything the tasks have in common lives here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import lightning as L
import numpy as np
import torch
from torch import nn

from visionheads._registry import Registry
from visionheads.backbones import Backbone, create_backbone
from visionheads.data.images import as_image_list, read_image
from visionheads.data.samples import as_image
from visionheads.data.sources import Source, resolve_source
from visionheads.errors import ConfigError, DataError
from visionheads.tasks._checkpoint import read_checkpoint, task_arguments, write_checkpoint
from visionheads.tasks._fitting import optimizer_and_schedule, run_fit
from visionheads.tasks._inference import evaluate_task, predict_task
from visionheads.tasks.history import History

HeadBuilder = Callable[..., nn.Module]  # (in_channels, strides, out_features, **options) -> nn.Module
_TASKS: Registry[type[Task]] = Registry("task", "list_tasks() shows all")


def register_task(cls: type[Task]) -> type[Task]:
    """Class decorator: make a Task subclass available as `Task(cls.name)`."""
    _TASKS.register(cls.name, cls)
    return cls


def task_class(name: str) -> type[Task]:
    """The Task subclass registered as `name`."""
    import visionheads.tasks  # noqa: F401  (importing the package registers every task)

    return _TASKS.get(name)


def list_tasks() -> list[str]:
    """Names of all tasks."""
    import visionheads.tasks  # noqa: F401

    return _TASKS.names()


class Task(L.LightningModule):
    """`Task("classification", backbone="resnet18", ...)`: a backbone, a head, and what trains and judges them."""

    name: ClassVar[str] = ""
    heads: ClassVar[dict[str, HeadBuilder]] = {}
    default_head: ClassVar[str] = ""
    target_key: ClassVar[str] = "label"  # the target of (images, targets) arrays
    option_defaults: ClassVar[dict[str, Any]] = {}
    monitor: ClassVar[tuple[str, str]] = ("val_loss", "min")

    def __new__(cls, name: str | None = None, *args: Any, **kwargs: Any) -> Task:
        # Task("segmentation", ...) builds the registered subclass, as pathlib.Path("x") builds a PosixPath.
        if cls is Task:
            if name is None:
                raise ConfigError(f"Task needs a task name; one of {list_tasks()}")
            cls = task_class(name)
        return super().__new__(cls)

    def __init__(
        self,
        name: str | None = None,
        *,
        backbone: str | Backbone = "simple_cnn",
        head: str | None = None,
        weights: str | Path | None = None,
        in_chans: int = 3,
        image_size: int | None = None,
        num_classes: int | None = None,
        class_names: Sequence[str] | None = None,
        seed: int = 0,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        **options: Any,
    ) -> None:
        super().__init__()
        if name is not None and name != self.name:
            raise ConfigError(f"{type(self).__name__} is the {self.name!r} task, not {name!r}")
        unknown = sorted(set(options) - set(self.option_defaults))
        if unknown:
            valid = ", ".join(sorted(self.option_defaults)) or "none"
            raise ConfigError(f"task {self.name!r} has no option(s) {unknown}; its options: {valid}")
        head = head or self.default_head
        if head not in self.heads:
            raise ConfigError(
                f"unknown head {head!r} for task {self.name!r}; valid: {sorted(self.heads)} (list_heads())"
            )
        L.seed_everything(seed, verbose=False)  # before building, so initial weights are reproducible
        self.backbone = (
            backbone
            if isinstance(backbone, Backbone)
            else create_backbone(backbone, weights=weights, in_chans=in_chans)
        )
        self.in_chans = self.backbone.in_chans
        self.image_size = int(image_size or self.backbone.input_size)
        if self.image_size < self.backbone.min_input_size:
            raise ConfigError(
                f"image_size={self.image_size} is below what backbone {self.backbone.name!r} accepts "
                f"({self.backbone.min_input_size}); raise image_size"
            )
        self.head_name = head
        if num_classes is None and class_names is not None:
            num_classes = len(class_names)
        self.num_classes = num_classes
        self.class_names = list(class_names) if class_names is not None else None
        if self.class_names is not None and num_classes is not None and len(self.class_names) != num_classes:
            raise ConfigError(f"{len(self.class_names)} class_names given but num_classes={num_classes}")
        self.seed = seed
        self.mean = tuple(mean) if mean is not None else self.backbone.mean
        self.std = tuple(std) if std is not None else self.backbone.std
        self.options = {**self.option_defaults, **options}
        self.head: nn.Module | None = None
        self.history_rows: list[dict[str, float]] = []
        self.history: History | None = None
        self.run_dir: Path | None = None
        self.last_evaluation: Any = None  # the metric accumulator of the last evaluation (for plots)
        self.last_evaluated: Source | None = None  # ... and the data it saw
        self._fit_settings: dict[str, Any] = {"lr": 1e-3, "weight_decay": 0.01, "strategy": "scratch"}
        self._body_frozen = False
        self._reset_epoch_state()
        if self.head_outputs() is not None:
            self.build_head()

    # ----- hooks a task fills in -------------------------------------------------------------------
    def head_outputs(self) -> int | None:
        """How many numbers the head emits per image (None while unknown, e.g. before classes are seen)."""
        raise NotImplementedError

    def source_from_path(self, path: Path, channels: int) -> Source:
        """Read a path of this task's data format."""
        raise NotImplementedError

    def check_data(self, source: Source, *, fitting: bool) -> None:
        """Check `source` against the task; may learn from it (classes, when `fitting`) or adapt it."""

    def check_class_names(self, source: Source, *, fitting: bool) -> None:
        """Fitting on data whose class names differ from the task's (a loaded task, say) is a ConfigError."""
        names, known = source.class_names, self.class_names
        if fitting and names is not None and known is not None and list(names) != known:
            raise ConfigError(f"{source.description}: classes {names} differ from the task's {known}")

    def sample_keys(self) -> tuple[str, ...]:
        """Keys every sample must hold."""
        return ("image", self.target_key)

    def train_transform(self, source: Source) -> Any:
        """The albumentations pipeline for training samples."""
        raise NotImplementedError

    def eval_transform(self) -> Any:
        """The albumentations pipeline for evaluation and prediction."""
        raise NotImplementedError

    def to_tensors(self, pipeline: Any, sample: dict[str, Any], where: str) -> dict[str, torch.Tensor]:
        """One checked sample (image already HxWxC uint8) through `pipeline` to tensors."""
        raise NotImplementedError

    def compute_loss(self, outputs: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The training loss of a batch."""
        raise NotImplementedError

    def new_metrics(self) -> Any:
        """An accumulator with `update(outputs, batch)` and `compute() -> dict[str, float]`."""
        raise NotImplementedError

    def decode(self, outputs: torch.Tensor) -> list[Any]:
        """Raw head outputs of a batch to plain Python/NumPy predictions."""
        raise NotImplementedError

    def task_plots(self, out_dir: Path) -> list[Path]:
        """The task's own figures (e.g. a confusion matrix of the last evaluation)."""
        return []

    # ----- model ---------------------------------------------------------------------------------
    def build_head(self) -> None:
        """(Re)build the head for `head_outputs()` outputs."""
        outputs = self.head_outputs()
        if outputs is None:
            raise ConfigError(f"task {self.name!r} cannot build its head yet: the number of outputs is unknown")
        build = self.heads[self.head_name]
        head_options = {k: v for k, v in self.options.items() if k in _head_option_names(build)}
        self.head = build(self.backbone.channels, self.backbone.strides, outputs, **head_options)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images: float normalised, shape (B, in_chans, H, W). Returns: the head's raw outputs."""
        if self.head is None:
            raise ConfigError(f"the {self.name!r} task has no head yet: pass num_classes or call fit() first")
        return self.head(self.backbone(images))

    def train(self, mode: bool = True) -> Task:
        """As nn.Module.train, but a frozen body stays in eval mode."""
        super().train(mode)
        if self._body_frozen:
            self.backbone.eval()  # a frozen body keeps its BatchNorm statistics
        return self

    def set_body_frozen(self, frozen: bool) -> None:
        """Freeze (or unfreeze) the backbone: no gradients, BatchNorm in eval mode."""
        self._body_frozen = frozen
        self.backbone.requires_grad_(not frozen)
        self.train(self.training)

    @property
    def config(self) -> dict[str, Any]:
        """Everything needed to rebuild this task, as plain data."""
        return {
            "task": self.name,
            "backbone": self.backbone.name,
            "head": self.head_name,
            "in_chans": self.in_chans,
            "image_size": self.image_size,
            "num_classes": self.num_classes,
            "class_names": self.class_names,
            "seed": self.seed,
            "mean": list(self.mean),
            "std": list(self.std),
            "options": dict(self.options),
        }

    # ----- Lightning steps -------------------------------------------------------------------------
    def _reset_epoch_state(self) -> None:
        self._train_loss_sum = torch.zeros(())
        self._train_batches = 0
        self._val_loss_sum = torch.zeros(())
        self._val_batches = 0
        self._val_metrics: Any = None
        self._last_val: dict[str, float] = {}

    def training_step(self, batch: dict[str, torch.Tensor], batch_index: int) -> torch.Tensor:
        """Forward, task loss, and the running loss for the progress bar."""
        loss = self.compute_loss(self(batch["image"]), batch)
        self._train_loss_sum = self._train_loss_sum.to(loss.device) + loss.detach()
        self._train_batches += 1
        size = len(batch["image"])
        self.log("loss", loss, prog_bar=True, logger=False, on_step=True, on_epoch=False, batch_size=size)
        self.log("train_loss", loss, logger=False, on_step=False, on_epoch=True, batch_size=size)  # for monitors
        return loss

    def on_validation_epoch_start(self) -> None:
        """Fresh metric accumulator for this validation pass."""
        self._val_metrics = self.new_metrics()
        self._val_loss_sum, self._val_batches = torch.zeros(()), 0

    def validation_step(self, batch: dict[str, torch.Tensor], batch_index: int) -> None:
        """Accumulate the loss and the task's metrics."""
        outputs = self(batch["image"])
        self._val_loss_sum = self._val_loss_sum.to(outputs.device) + self.compute_loss(outputs, batch).detach()
        self._val_batches += 1
        self._val_metrics.update(outputs, batch)

    def on_validation_epoch_end(self) -> None:
        """Log `val_loss` and `val_<metric>` (early stopping and checkpoints monitor these)."""
        if self._val_batches == 0:
            return
        values = {"val_loss": float(self._val_loss_sum / self._val_batches)}
        values |= {f"val_{key}": value for key, value in self._val_metrics.compute().items()}
        # Loggers get the whole epoch row at once (engine.RecordHistory); the bar shows the loss and the monitor.
        for key, value in values.items():
            self.log(key, value, logger=False, prog_bar=key in ("val_loss", self.monitor[0]), sync_dist=True)
        if not self.trainer.sanity_checking:
            self._last_val = values
            self.last_evaluation = self._val_metrics

    def epoch_row(self) -> dict[str, float]:
        """Close the epoch: its train loss and last validation metrics, as one History row."""
        row: dict[str, float] = {"epoch": self.current_epoch}
        if self._train_batches:
            row["train_loss"] = float(self._train_loss_sum / self._train_batches)
        row |= self._last_val
        self._train_loss_sum, self._train_batches, self._last_val = torch.zeros(()), 0, {}
        return row

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """The finished epochs' rows travel with the training state, so a resumed fit keeps its history."""
        checkpoint["visionheads_history"] = [dict(row) for row in self.history_rows]

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore the history rows saved by on_save_checkpoint."""
        self.history_rows = [dict(row) for row in checkpoint.get("visionheads_history", [])]

    def configure_optimizers(self) -> dict[str, Any]:
        """AdamW over body and head groups (body at 0.1x for finetune) with a one-cycle schedule per step."""
        return optimizer_and_schedule(self, self._fit_settings, int(self.trainer.estimated_stepping_batches))

    def on_train_epoch_start(self) -> None:
        """Finetune: keep the body frozen for the first `freeze_epochs` epochs."""
        freeze_epochs = self._fit_settings.get("freeze_epochs", 0)
        if self._fit_settings["strategy"] == "finetune":
            self.set_body_frozen(self.current_epoch < freeze_epochs)

    # ----- data ------------------------------------------------------------------------------------
    def resolve(self, data: Any) -> Source:
        """Any accepted data argument to a Source for this task (never an empty one)."""
        source = resolve_source(
            data, channels=self.in_chans, target_key=self.target_key, from_path=self.source_from_path
        )
        if len(source.dataset) == 0:
            raise DataError(f"{source.description}: the dataset is empty")
        return source

    # ----- the public workflow ---------------------------------------------------------------------
    def fit(
        self,
        train: Any,
        val: Any = None,
        *,
        epochs: int = 10,
        batch_size: int = 32,
        lr: float = 1e-3,
        strategy: str = "auto",
        devices: int | str | list[int] = "auto",
        precision: str | int = "auto",
        callbacks: list[L.Callback] | None = None,
        weight_decay: float = 0.01,
        patience: int | None = None,
        num_workers: int | None = None,
        project: str | Path = "runs",
        name: str | None = None,
        plots: bool = True,
        distributed: str = "auto",
        progress: bool | None = None,
        resume: str | Path | None = None,
        **trainer_kwargs: Any,
    ) -> History:
        """Train on `train` (validating on `val`, or the built-in val split) and return the History.

        `val=None` validates on a built-in dataset's own val split (if any); `val=False` skips validation.
        `strategy` is the transfer-learning strategy; `distributed` is Lightning's (e.g. "ddp"); `progress`
        forces the progress bar on or off (default: on when stderr is a terminal, else one line per epoch);
        `resume` continues an interrupted fit from its run folder (or its last.ckpt), in that folder: weights,
        optimiser, schedule, epoch and history as they were after the last finished epoch; pass the same data
        and settings. Other keyword arguments go to `lightning.Trainer`.
        With validation data the task ends holding the weights of its best validated epoch; without, its last.
        """
        trainer_options = dict(
            devices=devices, precision=precision, distributed=distributed, patience=patience,
            callbacks=callbacks, progress=progress, **trainer_kwargs,
        )  # fmt: skip
        return run_fit(
            self, train, val, epochs=epochs, batch_size=batch_size, lr=lr, strategy=strategy,
            weight_decay=weight_decay, num_workers=num_workers, project=project, name=name, plots=plots,
            resume=resume, trainer_options=trainer_options,
        )  # fmt: skip

    def evaluate(self, data: Any, *, batch_size: int = 64) -> dict[str, float]:
        """Metrics of the task on `data` as plain floats under stable names."""
        return evaluate_task(self, data, batch_size=batch_size)

    def predict(self, images: Any, *, batch_size: int = 64) -> list[Any]:
        """Predictions for image files, one HxWxC array, or a batch NxHxWxC; one result per image."""
        return predict_task(self, images, batch_size=batch_size)

    def image_arrays(self, images: Any) -> list[np.ndarray]:
        """Image paths, one HxWxC array or a batch (N, H, W[, C]) to checked HxWxC uint8 arrays."""
        arrays = []
        for index, item in enumerate(as_image_list(images)):
            if isinstance(item, (str, Path)):
                arrays.append(read_image(item, self.in_chans))
            else:
                arrays.append(as_image(item, f"images[{index}]", channels=self.in_chans))
        return arrays

    def save(self, path: str | Path) -> Path:
        """Write weights, config and class names to one file (atomically)."""
        state = {k: v.detach().cpu() for k, v in self.state_dict().items()}
        return write_checkpoint(path, self.config, state)

    @classmethod
    def load(cls, path: str | Path) -> Task:
        """Rebuild a saved task; the file is read with weights_only=True, so it cannot run code."""
        config, state_dict = read_checkpoint(path)
        task = Task(config["task"], **task_arguments(config))
        if task.head is None:
            task.build_head()
        task.load_state_dict(state_dict)
        return task.eval()

    def plot(self, out_dir: str | Path | None = None, data: Any = None) -> list[Path]:
        """Save training curves and the task's figures as PNG to `out_dir` (default: the run folder)."""
        from visionheads.viz.curves import plot_history

        out_dir = Path(out_dir or self.run_dir or ".")
        out_dir.mkdir(parents=True, exist_ok=True)
        if data is not None:
            self.evaluate(data)
        paths = []
        if self.history_rows:
            paths.append(plot_history(self.history_rows, out_dir / "curves.png", title=f"{self.name} training"))
        return paths + self.task_plots(out_dir)

    @classmethod
    def from_recipe(cls, path: str | Path, **overrides: Any) -> Task:
        """Build, train and test the task a recipe YAML describes; overrides like `epochs=3` or `fit.lr=0.01`."""
        from visionheads.tasks.recipe import run_recipe

        return run_recipe(path, overrides)


def _head_option_names(build: HeadBuilder) -> set[str]:
    import inspect

    return {p.name for p in inspect.signature(build).parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY}
