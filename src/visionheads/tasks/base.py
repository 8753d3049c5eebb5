"""The shared Task: what a task *defines* (its config, model, data, losses, metrics, decoding and figures as hooks)
and the user API, which hands the running to the runtime (`visionheads.runtime`: the fit driver, the
LightningModule each run builds, evaluation passes, inference, checkpoint files).

A task module subclasses `Task` once and fills in, top to bottom: its heads and model, how it adapts data, its
losses, its metrics, how it decodes outputs, and its figures. The hooks, in the order data flows through them:

    source_from_path / check_data         data argument -> checked Source (classes learnt when fitting)
    train_transform / eval_transform      albumentations pipelines
    to_tensors                            one checked sample dict -> dict of tensors (targets checked here)
    collate                               list of sample dicts -> batch (lists allowed, e.g. one dict per image)
    training_losses(batch, epoch)         {name: loss}; the sum is optimised, every term logged
    evaluation_outputs(batch)             outputs for metrics and decoding (validation, evaluate, test, predict)
    evaluation_losses(outputs, batch)     {name: loss} for val_loss ({} where eval mode gives none)
    new_metrics(source) / update_metrics / metric_values     torchmetrics states (synced across processes) -> floats
    decode(outputs, sizes)                plain Python/NumPy results at each image's own size
    figures(evaluation, out_dir)          PNGs drawn from an Evaluation handed in
    explanation_targets(outputs, target)  per image, the scalar its heatmap explains (Task.explain)

Most tasks only write `losses(outputs, batch)`: the default training_losses, evaluation_outputs and
evaluation_losses run `model(images)` and call it. Every hook gets what it needs as arguments.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Sampler, default_collate
from torchmetrics import Metric, MetricCollection

from visionheads.backbones import Backbone, create_backbone
from visionheads.data.catalog import Source
from visionheads.data.sources import resolve_source
from visionheads.errors import ConfigError, DataError, VisionHeadsError
from visionheads.heads import PooledHead
from visionheads.runtime.attacks import AttackSettings, robustness_figures
from visionheads.runtime.checkpoint import read_task_file, write_task_file
from visionheads.runtime.evaluation import evaluate_source
from visionheads.runtime.explain import Target, cam_type, class_activation_maps, first_conv, stage_index
from visionheads.runtime.export import ExportGraph, export_task, images_graph
from visionheads.runtime.features import FEATURES
from visionheads.runtime.fitting import FitSettings, run_fit
from visionheads.runtime.history import History
from visionheads.runtime.inference import image_arrays, image_batches, predictions
from visionheads.runtime.loaders import data_loader, transformed
from visionheads.runtime.module import TaskModule, TrainingPlan
from visionheads.runtime.passes import Evaluation
from visionheads.runtime.registry import list_tasks, task_class
from visionheads.runtime.tta import check_tta
from visionheads.tasks.config import HeadBuilder, TaskConfig, head_option_defaults, resolve_config
from visionheads.tasks.model import HeadOnBody


class Task(nn.Module):
    """`Task("classification", backbone="resnet18", ...)`: a backbone, a head, and what trains and judges them."""

    name: ClassVar[str] = ""
    config_type: ClassVar[type[TaskConfig]] = TaskConfig
    heads: ClassVar[dict[str, HeadBuilder]] = {}
    default_head: ClassVar[str] = ""
    monitor: ClassVar[tuple[str, str]] = ("val_loss", "min")
    fixed_input_size: ClassVar[bool] = True  # every batch at image_size (cuDNN benchmark mode pays off on GPUs)
    attackable: ClassVar[bool] = False  # evaluation(attack=...) works: losses on model(images), describe_predictions
    tta_views: ClassVar[tuple[tuple[bool, float], ...]] = ()  # (mirrored, scale) views of tta=True (undo_view)
    data_key: ClassVar[str | None] = None  # the sample key that marks this task's data, for clearer errors
    results_format: ClassVar[str | None] = None  # what write_results writes (evaluation(results=...)), if anything
    fitted_fields: ClassVar[tuple[str, ...]] = ()  # config fields a fit decides (fitted_config), recorded in its files
    export_parts: ClassVar[tuple[str, ...]] = ("predict",)  # the graphs export() can write, the first by default

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
        weights: str | Path | None = None,
        strict: bool = True,
        **arguments: Any,
    ) -> None:
        """Build backbone and head; `arguments` are the fields of the task's config and its head's options.

        `weights` is a tag (e.g. "imagenet") or a file for the body; a file must fit it exactly unless
        `strict=False`, which loads the tensors that fit and says which it left at random.
        """
        super().__init__()
        if name is not None and name != self.name:
            raise ConfigError(f"{type(self).__name__} is the {self.name!r} task, not {name!r}")
        if isinstance(backbone, Backbone) and weights is not None:
            raise ConfigError("weights= applies to a backbone given by name; a Backbone object has its weights")
        seed = int(arguments.get("seed", 0))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # initial weights are a function of the seed, whatever the global state
            body = backbone
            if not isinstance(body, Backbone):
                in_chans = int(arguments.get("in_chans", 3))
                body = self.create_body(body, weights=weights, in_chans=in_chans, strict=strict, options=arguments)
            self._config = resolve_config(
                self.config_type, task=self.name, heads=self.heads, default_head=self.default_head,
                body=body, weights=weights, arguments=arguments,
            )  # fmt: skip
            body.standardize_images = self._config.standardize_images
            self.model: nn.Module = (
                self.build_model(body, weights=weights) if self.head_outputs() is not None else HeadOnBody(body, None)
            )
        self.history: History | None = None  # the last fit's History (Keras' model.history), which plot() draws

    # ----- what the task is ----------------------------------------------------------------------------------
    @property
    def config(self) -> TaskConfig:
        """Everything that rebuilds this task (a frozen dataclass); its checkpoint stores exactly this."""
        return self._config

    def set_config(self, **changes: Any) -> None:
        """Replace config fields (e.g. the classes learnt from data); the model is rebuilt when its outputs change."""
        if not changes:
            return
        outputs = self.head_outputs() if self.head is not None else None
        try:
            self._config = dataclasses.replace(self._config, **changes)
        except TypeError as error:
            raise ConfigError(f"task {self.name!r}: {error}") from error
        self.backbone.standardize_images = self._config.standardize_images
        if self.head_outputs() is not None and self.head_outputs() != outputs:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self._config.seed)
                self.model = self.build_model(self.backbone)

    @property
    def backbone(self) -> Backbone:
        """The body: its parameters form the first optimiser group and are what transfer strategies freeze."""
        return self.model.body

    @property
    def head(self) -> nn.Module | None:
        """The head on the body (None until the number of outputs is known)."""
        return self.model.head

    @property
    def pooled_head(self) -> PooledHead | None:
        """The head when it pools the body's maps before its classifier (strategy="features" can cache them)."""
        return self.head if isinstance(self.head, PooledHead) else None

    @property
    def num_classes(self) -> int | None:
        """The number of classes (None until known)."""
        return self._config.num_classes

    @property
    def class_names(self) -> list[str] | None:
        """Class names, index order (None until known)."""
        names = self._config.class_names
        return list(names) if names is not None else None

    @property
    def device(self) -> torch.device:
        """Where the model's parameters are."""
        return next(self.model.parameters()).device

    # ----- 1. model (hooks) ----------------------------------------------------------------------------------
    def head_outputs(self) -> int | None:
        """How many numbers the head emits per image or pixel (None while unknown, e.g. before classes are seen)."""
        raise NotImplementedError

    @classmethod
    def create_body(
        cls, backbone: str, *, weights: str | Path | None, in_chans: int, strict: bool, options: dict[str, Any]
    ) -> Backbone:
        """The body named `backbone` with `weights`, from the registry (a task whose model comes whole, e.g.
        detection's torchvision detectors, builds its own from `options`)."""
        return create_backbone(backbone, weights=weights, in_chans=in_chans, strict=strict)

    def build_model(self, body: Backbone, *, weights: str | Path | None = None) -> nn.Module:
        """The model around `body` (its `body` and `head` attributes are the task's); by default `HeadOnBody`.
        `weights`: what the task was created with, for a model that comes whole (the body has its own already)."""
        build = self.heads[self._config.head]
        head = build(body.channels, body.strides, self.head_outputs(), **self.head_arguments(body))
        return HeadOnBody(body, head)

    def head_arguments(self, body: Backbone) -> dict[str, Any]:
        """The head's options as its builder gets them: the config's, where a task may fill in what `body` decides."""
        return dict(self._config.head_options)

    def forward(self, images: torch.Tensor) -> Any:
        """images: float normalised, shape (B, in_chans, H, W). Returns: the model's outputs."""
        return self.model(images)

    def model_inputs(self, images: Any) -> Any:
        """What the pipelines give, to what the model takes: uint8 images (B, C, H, W), or a list of (C, H, W) of
        several sizes, as float32 normalised with the config's mean and std, on their own device. Float images are
        taken as already normalised and pass unchanged (a task whose pipeline normalises itself)."""
        if isinstance(images, list):
            return [self.model_inputs(image[None])[0] for image in images]
        if not torch.is_tensor(images) or images.dtype != torch.uint8:
            return images
        config = self._config
        # Scale and shift worked out in double precision and rounded once to float32, not from float32 mean and std.
        scale = [1.0 / (255.0 * s) for s in config.std]
        shift = [-m / s for m, s in zip(config.mean, config.std, strict=True)]
        scale, shift = (torch.tensor(v, device=images.device).view(1, -1, 1, 1) for v in (scale, shift))
        return images.float().mul_(scale).add_(shift)  # (x / 255 - mean) / std; in place: a third faster

    def input_statistics(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """The config's mean and std, each (1, C, 1, 1) on `device`: pixels in [0, 1] to model inputs and back."""
        return tuple(torch.tensor(v, device=device).view(1, -1, 1, 1) for v in (self.config.mean, self.config.std))

    # ----- 2. data (hooks) -----------------------------------------------------------------------------------
    def sample_keys(self) -> tuple[str, ...]:
        """Keys every sample must hold."""
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

    def train_transform(self, source: Source) -> Any:
        """The albumentations pipeline for training samples."""
        raise NotImplementedError

    def eval_transform(self) -> Any:
        """The albumentations pipeline for evaluation and prediction."""
        raise NotImplementedError

    def to_tensors(self, pipeline: Any, sample: dict[str, Any], where: str) -> dict[str, Any]:
        """One checked sample (image already HxWxC uint8) through `pipeline` to tensors; `where` names it."""
        raise NotImplementedError

    def collate(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        """Samples to a batch (stacked tensors by default)."""
        return default_collate(samples)

    def train_batch_sampler(self, source: Source, batch_size: int, generator: torch.Generator) -> Sampler | None:
        """How training batches are drawn (with `generator`, the run's), where a task needs more than shuffling
        (None: shuffled, batch_size each)."""
        return None

    # ----- 3. losses (hooks) ---------------------------------------------------------------------------------
    def losses(self, outputs: Any, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Named loss terms of a batch from the model's outputs."""
        raise NotImplementedError

    def model_outputs(self, batch: dict[str, Any]) -> Any:
        """The model on a batch: on its images, or the head alone on cached body features (strategy="features")."""
        if FEATURES in batch:
            return self.head.classifier(batch[FEATURES])
        return self(batch["image"])

    def training_losses(self, batch: dict[str, Any], epoch: int) -> dict[str, torch.Tensor]:
        """Named loss terms of a training batch in `epoch` (from 0); their sum is optimised."""
        return self.losses(self.model_outputs(batch), batch)

    def evaluation_outputs(self, batch: dict[str, Any]) -> Any:
        """Outputs of an evaluation batch, for the metrics and for decoding."""
        return self.model_outputs(batch)

    def evaluation_losses(self, outputs: Any, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Named loss terms of an evaluation batch (val_loss)."""
        return self.losses(outputs, batch)

    # ----- 4. metrics (hooks) --------------------------------------------------------------------------------
    def new_metrics(self, source: Source | None) -> Metric | MetricCollection:
        """Fresh torchmetrics for one evaluation pass over `source` (None: batches whose source is not known)."""
        raise NotImplementedError

    def update_metrics(self, metrics: Metric | MetricCollection, outputs: Any, batch: dict[str, Any]) -> None:
        """Feed one batch to the metrics."""
        raise NotImplementedError

    def metric_values(self, computed: dict[str, torch.Tensor]) -> dict[str, float]:
        """The metrics' computed values as named floats (by default every scalar)."""
        return {key: float(value) for key, value in computed.items() if value.ndim == 0}

    # ----- 5. predictions (hooks) ----------------------------------------------------------------------------
    def prediction_outputs(self, batch: dict[str, Any]) -> Any:
        """Outputs of a batch of images to predict on (by default as in evaluation)."""
        return self.evaluation_outputs(batch)

    def undo_view(self, outputs: Any, *, mirrored: bool, size: tuple[int, int]) -> Any:
        """Outputs of a mirrored or rescaled view of a batch as outputs of the batch itself (input `size`), for
        tta=True; tasks with `tta_views` define it."""
        raise NotImplementedError

    def decode(self, outputs: Any, sizes: list[tuple[int, int]]) -> list[Any]:
        """Outputs of a batch to one plain Python/NumPy result per image, at its original (height, width)."""
        raise NotImplementedError

    def describe_predictions(self, outputs: Any, batch: dict[str, Any]) -> list[tuple[str, bool | None]]:
        """A short caption of each image's prediction in a batch, and whether it is right (None: not judged)."""
        raise NotImplementedError

    def export_outputs(self, batch: dict[str, Any], part: str) -> dict[str, torch.Tensor]:
        """What an exported graph of `part` returns for a batch of normalised images: named tensors that the light
        runtime (visionheads.deploy) decodes as `decode` does."""
        raise NotImplementedError

    def export_graph(self, part: str) -> ExportGraph:
        """The graph `export` writes for `part`: by default uint8 images (B, C, H, W) in, `export_outputs` out."""
        return images_graph(self, lambda batch: self.export_outputs(batch, part))

    def write_results(self, evaluation: Evaluation, path: Path) -> Path:
        """Write an evaluation's per-image results as `results_format` says (detection: a COCO results JSON)."""
        raise NotImplementedError

    # ----- 6. figures and what a fit teaches (hooks) ---------------------------------------------------------
    def figures(self, evaluation: Evaluation, out_dir: Path) -> list[Path]:
        """The task's own figures of an evaluation (e.g. a confusion matrix), saved as PNG in `out_dir`."""
        return []

    def fitted_config(self, history: History) -> dict[str, Any]:
        """Values of `fitted_fields` a finished fit decides (e.g. a threshold its best epoch chose); none by default."""
        return {}

    # ----- 7. explanations (hook) ----------------------------------------------------------------------------
    def explanation_targets(self, outputs: Any, target: int | str | None) -> list[Target]:
        """Per image of a batch, what its heatmap explains: a function of that image's outputs to a scalar."""
        raise ConfigError(f"explain() is for classification, regression and segmentation, not the {self.name} task")

    def class_index(self, target: int | str) -> int:
        """A class given by index or name as its index, or a ConfigError naming the classes."""
        names = self.class_names or [str(i) for i in range(self.num_classes or 0)]
        if isinstance(target, str) and target in names:
            return names.index(target)
        if isinstance(target, str) and target.isdigit():
            target = int(target)
        if isinstance(target, (int, np.integer)) and not isinstance(target, bool) and 0 <= target < len(names):
            return int(target)
        raise ConfigError(f"target={target!r} is not a class of this task; its classes: {', '.join(names)}")

    # ----- data, as users hand it over -----------------------------------------------------------------------
    def source(self, data: Any, *, fitting: bool = False) -> Source:
        """Any accepted data argument as a Source checked against the task, down to its first sample.

        `fitting` lets the task learn from the data (e.g. its classes). Bad data fails here, before any training.
        """
        keys = self.sample_keys()
        source = resolve_source(
            data,
            channels=self._config.in_chans,
            target_key=keys[1] if len(keys) > 1 else "label",  # what the targets of (images, targets) arrays are
            from_path=self.source_from_path,
        )
        if len(source.dataset) == 0:
            raise DataError(f"{source.description}: the dataset is empty")
        try:
            self.check_data(source, fitting=fitting)  # may adapt it (regression rotates labelled digits)
            transformed(self, source, self.eval_transform())[0]
        except VisionHeadsError:
            _refuse_other_tasks_data(self, source, keys)  # a clearer reason when the data is another task's
            raise
        return source

    def data_loader(
        self, data: Any, *, train: bool, batch_size: int = 32, num_workers: int | None = None
    ) -> DataLoader:
        """Batches of `data` (a Source from `source()`, or any data argument) through the train or eval pipeline:
        uint8 images, which `model_inputs` normalises (TaskModule does it on the device)."""
        source = data if isinstance(data, Source) else self.source(data, fitting=train)
        return data_loader(self, source, train=train, batch_size=batch_size, num_workers=num_workers)

    # ----- the user API: each hands the work to the runtime --------------------------------------------------
    def lightning_module(self, *, val: Any = None, **plan: Any) -> TaskModule:
        """This task as a `lightning.LightningModule` for a Trainer you bring: `plan` are TrainingPlan's fields (lr,
        weight_decay, strategy, freeze_epochs, body_lr_scale, schedule, channels_last); `val` the validation data
        when its metrics need the whole dataset (a COCO file for detection; else the batches suffice)."""
        fields = {f.name for f in dataclasses.fields(TrainingPlan)}
        unknown = sorted(set(plan) - fields)
        if unknown:
            raise ConfigError(
                f"lightning_module has no argument {unknown[0]!r}; a plan takes {', '.join(sorted(fields))}"
            )
        val_source = val if isinstance(val, Source) or val is None else self.source(val)
        return TaskModule(self, TrainingPlan(**plan), val=val_source)

    def fit(self, train: Any, val: Any = None, **settings: Any) -> History:
        """Train on `train`, validating on `val` (default: a built-in dataset's own val split; False: none).

        `settings` are the fields of `FitSettings` (epochs, batch_size, lr, strategy, patience, devices,
        precision, resume, ...); other `lightning.Trainer` arguments pass through. Writes a run folder and
        returns its History (also kept as `task.history`). With validation data the task ends holding its best
        validated epoch's weights.
        """
        self.history = run_fit(self, train, val, FitSettings.from_arguments(settings))
        return self.history

    def evaluation(
        self,
        data: Any,
        *,
        batch_size: int = 64,
        accelerator: str = "auto",
        devices: int | str | list[int] = 1,
        distributed: str = "auto",
        precision: str | int = "auto",
        progress: bool | None = None,
        attack: str | Sequence[str] | None = None,
        eps: float | Sequence[float] | None = None,
        steps: int | None = None,
        alpha: float | None = None,
        results: str | Path | None = None,
        tta: bool = False,
    ) -> Evaluation:
        """One evaluation pass over `data` (Lightning's test loop, on the GPU when there is one, or several
        processes with `devices`/`distributed`): metrics as floats and what they computed, for figures.

        `attack` ("fgsm", "pgd" or both) also scores adversarial versions of the images at each `eps` (an L∞ bound
        on pixels in [0, 1]; default 0, 0.01, 0.02, 0.05, 0.1) as `<metric>@<attack>=<eps>`, e.g.
        `accuracy@fgsm=0.1`; PGD takes `steps` (default 10) of size `alpha` (default 2.5 * eps / steps).
        `results` also writes each image's results there (detection: a COCO results JSON any COCO tool scores).
        `tta=True` scores the outputs averaged over the task's test-time views (classification: the image and its
        mirror; segmentation: both at 0.75, 1 and 1.25 times the size), at that many times the cost.
        """
        if tta:
            check_tta(self)
        settings = AttackSettings.from_arguments(attack, eps, steps, alpha)
        if settings is not None and not self.attackable:
            supported = [name for name in list_tasks() if task_class(name).attackable]
            raise ConfigError(f"attacks support the tasks {', '.join(supported)}, not {self.name!r}")
        if results is not None and self.results_format is None:
            writers = [name for name in list_tasks() if task_class(name).results_format]
            raise ConfigError(f"results= is for the tasks {', '.join(writers)}; the {self.name} task writes none")
        source = self.source(data)
        evaluation = evaluate_source(
            self, source, batch_size=batch_size, accelerator=accelerator, devices=devices, distributed=distributed,
            precision=precision, progress=progress, attack=settings, tta=tta,
        )  # fmt: skip
        if results is not None:
            self.write_results(evaluation, Path(results))
        return evaluation

    def evaluate(self, data: Any, **options: Any) -> dict[str, float]:
        """Metrics of the task on `data` as plain floats under stable names (options as for `evaluation`; with
        `attack`, also each metric under attack as `<metric>@<attack>=<eps>`)."""
        return self.evaluation(data, **options).metrics

    def predict(
        self,
        images: Any,
        *,
        batch_size: int = 64,
        compile: bool | str = False,
        tta: bool = False,
        progress: bool | None = None,
    ) -> list[Any]:
        """Predictions for image files or a folder of them, one HxWxC array, or a batch NxHxWxC; one result per
        image, at its size. Images are read batch by batch. `compile=True` runs the model through torch.compile
        (inductor; a string names another torch.compile backend), compiled on first use and kept for the task.
        `tta=True` averages the outputs over the task's test-time views (see `evaluation`). `progress`: a bar over
        the batches (None: on a terminal, when there is more than one batch; False: never)."""
        if tta:
            check_tta(self)
        return predictions(self, images, batch_size=batch_size, compile=compile, tta=tta, progress=progress)

    def export(
        self,
        path: str | Path,
        *,
        format: str = "onnx",
        part: str | None = None,
        dynamic: bool = True,
        opset: int | None = None,
        half: bool = False,
    ) -> Path:
        """Write the model as an ONNX (`.onnx`), TorchScript (`.torchscript`) or ExportedProgram (`.pt2`) file that
        carries what using it needs (task, classes, input size and channels, mean/std, thresholds, config); load it
        with `vh.load_exported(path)`, whose `predict` gives what `Task.predict` gives.

        The graph takes uint8 images (B, C, H, W) (detection: one (C, H, W) image of any size) and normalises them
        itself. `part`: one of `export_parts` (the autoencoder's "reconstruct", "encode", "decode"). `dynamic`: the
        batch and image size may vary; `opset`: the ONNX opset (default: the exporter's); `half`: float16 weights for
        a CUDA device.
        """
        return export_task(self, path, format=format, part=part, dynamic=dynamic, opset=opset, half=half)

    def save(self, path: str | Path) -> Path:
        """Write config and weights to one file (atomically); `vh.Task.load` and `load_from_checkpoint` read it."""
        state = {key: value.detach().cpu() for key, value in self.state_dict().items()}
        return write_task_file(path, task=self.name, arguments=self._config.arguments(), state_dict=state)

    @classmethod
    def load(cls, path: str | Path) -> Task:
        """Rebuild a saved task (Task.save, best.pt, last.pt, last.ckpt); read with weights_only=True: no code runs."""
        saved = read_task_file(path)
        task_type = task_class(saved.task)
        arguments = saved.arguments
        if saved.version == 1:  # v1 kept the options of every head: those of the task's head still apply
            fields = {f.name for f in dataclasses.fields(task_type.config_type)}
            options = head_option_defaults(task_type.heads[arguments.get("head") or task_type.default_head])
            arguments = {key: value for key, value in arguments.items() if key in fields or key in options}
        task = Task(saved.task, **arguments)
        task._load_state(saved.state_dict, path)
        return task.eval()

    def load_weights(self, path: str | Path) -> None:
        """Load the weights of a checkpoint of this task (e.g. a run's best.pt) into it."""
        saved = read_task_file(path)
        if saved.task != self.name:
            raise ConfigError(f"{path}: a {saved.task} checkpoint, given to a {self.name} task")
        self._load_state(saved.state_dict, path)

    def _load_state(self, state_dict: dict[str, torch.Tensor], path: str | Path) -> None:
        try:
            self.load_state_dict(state_dict)
        except RuntimeError as error:
            raise ConfigError(f"{path}: the weights do not fit this task's model ({str(error)[:300]})") from error

    def plot(
        self, out_dir: str | Path | None = None, data: Any = None, *, history: History | None = None
    ) -> list[Path]:
        """Training curves (of `history` or the last fit) and the task's figures of `data` (data or an Evaluation)."""
        from visionheads.viz.curves import plot_history

        history = history or self.history
        out_dir = Path(out_dir or (history.run_dir if history and history.run_dir else "."))
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = []
        if history is not None and history.rows:
            paths.append(plot_history(history.rows, out_dir / "curves.png", title=f"{self.name} training"))
        if data is not None:
            evaluation = data if isinstance(data, Evaluation) else self.evaluation(data)
            paths += self.figures(evaluation, out_dir)
            if evaluation.robustness is not None:
                paths += robustness_figures(evaluation.metrics, evaluation.robustness, out_dir)
        return paths

    # ----- seeing inside -------------------------------------------------------------------------------------
    def explain(
        self,
        images: Any,
        *,
        method: str = "gradcam",
        target: int | str | None = None,
        stage: int = -1,
        batch_size: int = 16,
    ) -> list[np.ndarray]:
        """Class activation maps (Grad-CAM and kin, by the grad-cam package) of image files, one HxWxC array or a
        batch: one float32 (H, W) heatmap in [0, 1] per image, at its own size.

        `target`: the class (index or name) to explain; default the predicted one. Regression: the output
        dimension, default all; segmentation: the class, required. `stage`: the body's stage, default the deepest.
        """
        cam_type(method)  # an unknown method or a missing package fails before any image is read
        stage = stage_index(stage, len(self.backbone.channels))
        heatmaps: list[np.ndarray] = []
        for batch, sizes in image_batches(self, images, batch_size=batch_size):
            with torch.no_grad():
                outputs = self(batch["image"])
            targets = self.explanation_targets(outputs, target)
            heatmaps += class_activation_maps(
                self, self.backbone, stage, self.backbone.strides[stage], batch["image"], targets, method, sizes
            )
        return heatmaps

    @torch.inference_mode()
    def feature_maps(self, image: Any, *, stage: int = -1) -> np.ndarray:
        """The body's maps at `stage` (default the deepest) for one image (a file or an HxWxC array), after the
        eval pipeline: float32 (channels[stage], image_size / strides[stage], ...)."""
        stage = stage_index(stage, len(self.backbone.channels))
        arrays = image_arrays(image, self._config.in_chans)
        if len(arrays) != 1:
            raise ConfigError(f"feature_maps() takes one image, got {len(arrays)}")
        batch, _ = next(image_batches(self, arrays))
        return self.backbone(batch["image"])[stage][0].float().cpu().numpy()

    def plot_feature_maps(self, image: Any, *, stage: int = -1, path: str | Path | None = None) -> Path:
        """A grid of one image's stage maps (`feature_maps`), each on its own grey scale (PNG); returns its path."""
        from visionheads.viz.inside import plot_feature_maps

        maps = self.feature_maps(image, stage=stage)
        title = f"{self.backbone.name}: stage {stage} maps ({maps.shape[0]} x {maps.shape[1]}x{maps.shape[2]})"
        path = _figure_path(path, self.history, f"feature_maps_stage{stage}.png")
        return plot_feature_maps(maps, path, title=title)

    def plot_filters(self, path: str | Path | None = None) -> Path:
        """The kernels of the body's first convolution as a grid of tiles (AlexNet's figure 3, PNG); returns its path.

        Three-channel kernels show in colour, others as the grey mean over their input channels.
        """
        from visionheads.viz.inside import plot_kernels

        kernels = first_conv(self.backbone).weight.detach().float().cpu().numpy()  # (out, in, kh, kw)
        count, _, height, width = kernels.shape
        title = f"{self.backbone.name}: first convolution, {count} kernels {height}x{width}"
        return plot_kernels(kernels, _figure_path(path, self.history, "filters.png"), title=title)


def _figure_path(path: str | Path | None, history: History | None, default: str) -> Path:
    # Beside the last fit's other plots, else in the working folder
    if path is not None:
        if not isinstance(path, (str, Path)):
            raise ConfigError(f"path must be a file name (str or Path), got {path!r}")
        return Path(path)
    run_dir = history.run_dir if history is not None else None
    return Path(run_dir or ".") / default


def _refuse_other_tasks_data(task: Task, source: Source, keys: tuple[str, ...]) -> None:
    # Instead of the task's own complaint, whose advice (e.g. "pass num_classes") misleads when the data is
    # another task's: say so in those words. Each task declares the sample key that marks its data (`data_key`).
    sample = source.dataset[0]
    if not isinstance(sample, Mapping):
        return  # require_keys names the problem
    missing = [key for key in keys if key not in sample]
    if not missing:
        return
    others = [name for name in list_tasks() if (key := task_class(name).data_key) in sample and key not in keys]
    if others:
        given = " or ".join(others)
        raise DataError(
            f"{source.description}: a {task.name} task given {given} data (its samples hold {sorted(sample)}, "
            f"not {missing}); give {task.name} data, or use a {given} task"
        )
