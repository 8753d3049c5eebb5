"""The shared Task: a LightningModule that owns the steps, the optimiser, fit/evaluate/predict/save/load.

A task module subclasses `Task` once and fills in, top to bottom: its heads and model, how it adapts data, its
losses, its metrics, how it decodes outputs, and its figures. The hooks, in the order data flows through them:

    source_from_path / check_data         data argument -> checked Source (classes learnt when fitting)
    train_transform / eval_transform      albumentations pipelines
    to_tensors                            one checked sample dict -> dict of tensors (targets checked here)
    collate                               list of sample dicts -> batch (lists allowed, e.g. one dict per image)
    training_losses(batch)                {name: loss}; the sum is optimised, every term logged
    evaluation_outputs(batch)             outputs for metrics and decoding (validation, evaluate, test, predict)
    evaluation_losses(outputs, batch)     {name: loss} for val_loss ({} where eval mode gives none)
    new_metrics / update_metrics / metric_values     torchmetrics states (synced across processes) -> floats
    decode(outputs, sizes)                plain Python/NumPy results at each image's own size
    figures(evaluation, out_dir)          PNGs drawn from an Evaluation handed in
    explanation_targets(outputs, target)  per image, the scalar its heatmap explains (Task.explain)

Most tasks only write `losses(outputs, batch)`: the default training_losses, evaluation_outputs and
evaluation_losses run `model(images)` and call it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import lightning as L
import numpy as np
import torch
from lightning.fabric.utilities.data import AttributeDict
from torch import nn
from torch.utils.data import DataLoader, Sampler, default_collate
from torchmetrics import MeanMetric, Metric, MetricCollection
from tqdm.auto import tqdm

from visionheads._registry import Registry
from visionheads.backbones import Backbone, create_backbone
from visionheads.data.catalog import Source
from visionheads.data.images import as_image_list, read_image
from visionheads.data.pipeline import EpochClock, TensorSamples, TransformedDataset, make_loader
from visionheads.data.samples import as_image
from visionheads.data.sources import resolve_source
from visionheads.engine import RunData, build_evaluator, default_workers, inference_device, quiet_lightning
from visionheads.errors import ConfigError, DataError, TrainingError, VisionHeadsError, whole_number
from visionheads.tasks.attacks import (
    AttackedPass,
    AttackSettings,
    Robustness,
    batch_seed,
    parameters_fixed,
    perturb,
    robustness_figures,
)
from visionheads.tasks.checkpoint import META_KEY, meta, read_task_file, write_task_file
from visionheads.tasks.config import HeadBuilder, TaskConfig, head_option_defaults, resolve_config
from visionheads.tasks.fitting import FitSettings, TrainingPlan, run_fit
from visionheads.tasks.history import History
from visionheads.tasks.inside import Target, cam_type, class_activation_maps, first_conv, stage_index
from visionheads.tasks.model import HeadOnBody

FEATURES = "features"  # the batch key of cached body features (strategy="features")
_TASKS: Registry[type[Task]] = Registry("task", "list_tasks() shows all")


def register_task(cls: type[Task]) -> type[Task]:
    """Class decorator: make a Task subclass available as `Task(cls.name)`."""
    _TASKS.register(cls.name, cls)
    return cls


def task_class(name: str) -> type[Task]:
    """The Task subclass registered as `name`."""
    return _TASKS.get(name)


def list_tasks() -> list[str]:
    """Names of all tasks."""
    return _TASKS.names()


@dataclass
class Evaluation:
    """One evaluation pass: the data, its metrics as floats, and everything the metrics computed (for figures)."""

    source: Source
    metrics: dict[str, float]
    computed: dict[str, torch.Tensor]
    robustness: Robustness | None = None  # what an attacked evaluation adds for its figures


class _LossMeans:
    """Means of named loss terms over a pass, weighted by batch size; torchmetrics states, synced across processes.

    (Cheaper than `self.log(..., on_epoch=True)` on every step, which costs about a millisecond per call.)
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.means: dict[str, MeanMetric] = {}

    def update(self, losses: dict[str, torch.Tensor], size: int) -> None:
        for name, value in losses.items():
            if name not in self.means:
                self.means[name] = MeanMetric(sync_on_compute=True).to(self.device)
            self.means[name].update(value.detach().float(), weight=size)

    def compute(self) -> dict[str, float]:
        return {name: float(mean.compute()) for name, mean in self.means.items()}


class _EvaluationPass:
    """The loss means and the task's metrics over one evaluation pass (and under attack, when one is asked for)."""

    def __init__(
        self, metrics: Metric | MetricCollection, device: torch.device, attacked: AttackedPass | None = None
    ) -> None:
        self.metrics = metrics.to(device)
        self.losses = _LossMeans(device)
        self.attacked = attacked


class Task(L.LightningModule):
    """`Task("classification", backbone="resnet18", ...)`: a backbone, a head, and what trains and judges them."""

    name: ClassVar[str] = ""
    config_type: ClassVar[type[TaskConfig]] = TaskConfig
    heads: ClassVar[dict[str, HeadBuilder]] = {}
    default_head: ClassVar[str] = ""
    monitor: ClassVar[tuple[str, str]] = ("val_loss", "min")
    fixed_input_size: ClassVar[bool] = True  # every batch at image_size (cuDNN benchmark mode pays off on GPUs)
    attackable: ClassVar[bool] = False  # evaluation(attack=...) works: losses on model(images), describe_predictions

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
                body = create_backbone(body, weights=weights, in_chans=in_chans, strict=strict)
            self._config = resolve_config(
                self.config_type, task=self.name, heads=self.heads, default_head=self.default_head,
                body=body, weights=weights, arguments=arguments,
            )  # fmt: skip
            body.standardize_images = self._config.standardize_images
            self.model: nn.Module = (
                self.build_model(body) if self.head_outputs() is not None else HeadOnBody(body, None)
            )
        self.plan = TrainingPlan()  # how configure_optimizers trains; fit sets it from its arguments
        self._loaded_from: Path | None = None  # the checkpoint of Task.load, for messages
        self.history: History | None = None  # the last fit's History
        self._clock = EpochClock(seed)
        self._body_frozen = False
        self._train_losses = _LossMeans(torch.device("cpu"))
        self._pass: _EvaluationPass | None = None
        self._finished: tuple[dict[str, float], dict[str, torch.Tensor], Robustness | None] | None = None
        self._attack: AttackSettings | None = None  # the attacks of the evaluation under way

    # ----- configuration ---------------------------------------------------------------------------
    @property
    def config(self) -> TaskConfig:
        """Everything that rebuilds this task (a frozen dataclass); its checkpoint stores exactly this."""
        return self._config

    @property
    def hparams(self) -> AttributeDict:
        """The config as Lightning hyperparameters: `SomeTask.load_from_checkpoint(path)` rebuilds the task."""
        return AttributeDict(name=self.name, **self._config.arguments())

    @property
    def trainer(self) -> L.Trainer:
        """The Trainer the task is attached to; AttributeError when none, so that torch.jit.trace and
        torch.export, which probe every attribute with hasattr, work on a task without one."""
        if self._trainer is None and self._fabric is None:
            raise AttributeError(f"{type(self).__name__} is not attached to a Trainer")
        return L.LightningModule.trainer.fget(self)

    @trainer.setter
    def trainer(self, trainer: L.Trainer | None) -> None:
        L.LightningModule.trainer.fset(self, trainer)

    def set_config(self, **changes: Any) -> None:
        """Replace config fields (e.g. the classes learnt from data); the model is rebuilt when its outputs change."""
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
    def num_classes(self) -> int | None:
        """The number of classes (None until known)."""
        return self._config.num_classes

    @property
    def class_names(self) -> list[str] | None:
        """Class names, index order (None until known)."""
        names = self._config.class_names
        return list(names) if names is not None else None

    # ----- 1. model (hooks) --------------------------------------------------------------------------
    def head_outputs(self) -> int | None:
        """How many numbers the head emits per image or pixel (None while unknown, e.g. before classes are seen)."""
        raise NotImplementedError

    def build_model(self, body: Backbone) -> nn.Module:
        """The model around `body`; by default the configured head on it (`HeadOnBody`)."""
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

    # ----- 2. data (hooks) ---------------------------------------------------------------------------
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

    # ----- 3. losses (hooks) -------------------------------------------------------------------------
    def losses(self, outputs: Any, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Named loss terms of a batch from the model's outputs."""
        raise NotImplementedError

    def model_outputs(self, batch: dict[str, Any]) -> Any:
        """The model on a batch: on its images, or the head alone on cached body features (strategy="features")."""
        if FEATURES in batch:
            return self.head.classifier(batch[FEATURES])
        return self(batch["image"])

    def training_losses(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Named loss terms of a training batch; their sum is optimised."""
        return self.losses(self.model_outputs(batch), batch)

    def evaluation_outputs(self, batch: dict[str, Any]) -> Any:
        """Outputs of an evaluation batch, for the metrics and for decoding."""
        return self.model_outputs(batch)

    def evaluation_losses(self, outputs: Any, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Named loss terms of an evaluation batch (val_loss)."""
        return self.losses(outputs, batch)

    # ----- 4. metrics (hooks) ------------------------------------------------------------------------
    def new_metrics(self) -> Metric | MetricCollection:
        """Fresh torchmetrics for one evaluation pass."""
        raise NotImplementedError

    def update_metrics(self, metrics: Metric | MetricCollection, outputs: Any, batch: dict[str, Any]) -> None:
        """Feed one batch to the metrics."""
        raise NotImplementedError

    def metric_values(self, computed: dict[str, torch.Tensor]) -> dict[str, float]:
        """The metrics' computed values as named floats (by default every scalar)."""
        return {key: float(value) for key, value in computed.items() if value.ndim == 0}

    # ----- 5. predictions (hooks) --------------------------------------------------------------------
    def decode(self, outputs: Any, sizes: list[tuple[int, int]]) -> list[Any]:
        """Outputs of a batch to one plain Python/NumPy result per image, at its original (height, width)."""
        raise NotImplementedError

    def describe_predictions(self, outputs: Any, batch: dict[str, Any]) -> list[tuple[str, bool | None]]:
        """A short caption of each image's prediction in a batch, and whether it is right (None: not judged)."""
        raise NotImplementedError

    # ----- 6. figures (hooks) ------------------------------------------------------------------------
    def figures(self, evaluation: Evaluation, out_dir: Path) -> list[Path]:
        """The task's own figures of an evaluation (e.g. a confusion matrix), saved as PNG in `out_dir`."""
        return []

    # ----- 7. explanations (hook) --------------------------------------------------------------------
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

    # ----- Lightning steps ---------------------------------------------------------------------------
    def training_step(self, batch: dict[str, Any], batch_index: int) -> torch.Tensor:
        """The task's loss terms and their sum, which is optimised; their epoch means become train_* values."""
        losses = self.training_losses(batch)
        total = torch.stack(list(losses.values())).sum()
        self._stop_unless_finite(total, batch_index)
        self._train_losses.update(_named_totals(losses, total), _batch_size(batch))
        if self.trainer.progress_bar_callback is not None:
            self.log("loss", total.detach(), prog_bar=True, logger=False, on_step=True, on_epoch=False)
        return total

    def _stop_unless_finite(self, total: torch.Tensor, batch_index: int) -> None:
        # Before backward: the weights (and last.ckpt, best.pt) stay those of the last good step. Every process
        # takes part in the decision, so that under DDP all stop together instead of waiting for the one that left.
        finite = bool(torch.isfinite(total))
        if self.trainer.strategy.reduce_boolean_decision(not finite, all=False):
            value = "non-finite on another process" if finite else str(float(total.detach()))
            raise TrainingError(
                f"the training loss became {value} at epoch {self.current_epoch + 1}, batch {batch_index + 1}; "
                f"the fit stopped and its run folder keeps the last saved epoch. Lower lr (it was {self.plan.lr:g}) "
                "or look for extreme values in the data"
            )

    def on_train_epoch_end(self) -> None:
        """Log `train_loss` (and `train_loss_<term>`): means over the epoch's samples, on every process."""
        for name, value in self._train_losses.compute().items():
            self.log(f"train_{name}", value, logger=False)

    def validation_step(self, batch: dict[str, Any], batch_index: int) -> None:
        """The shared evaluation step."""
        self._evaluation_step(batch)

    def test_step(self, batch: dict[str, Any], batch_index: int) -> None:
        """The shared evaluation step (Task.evaluate runs Trainer.test), and the attacks evaluation asked for."""
        outputs = self._evaluation_step(batch)
        if self._pass.attacked is not None:
            self._attack_step(self._pass.attacked, batch, outputs, batch_index)

    def _evaluation_step(self, batch: dict[str, Any]) -> Any:
        outputs = self.evaluation_outputs(batch)
        losses = self.evaluation_losses(outputs, batch)
        if losses:
            total = torch.stack(list(losses.values())).sum()
            self._pass.losses.update(_named_totals(losses, total), _batch_size(batch))
        self.update_metrics(self._pass.metrics, outputs, batch)
        return outputs

    def _attack_step(self, attacked: AttackedPass, batch: dict[str, Any], clean: Any, batch_index: int) -> None:
        # The attacks perturb pixels in [0, 1], before the eval pipeline's mean/std normalisation, and go through
        # the whole model (body and head) on images. The test loop runs in inference mode, whose tensors autograd
        # refuses: what the loss saves for backward is made outside it; the metrics' states are updated inside it.
        with torch.inference_mode(False):
            batch = {key: value.clone() if torch.is_tensor(value) else value for key, value in batch.items()}
            mean, std = self.input_statistics(self.device)
            pixels = batch["image"].float() * std + mean  # (B, C, H, W) in [0, 1]

        def loss_of(images: torch.Tensor) -> torch.Tensor:
            return torch.stack(list(self.losses(self((images - mean) / std), batch).values())).sum()

        examples = attacked.examples if self.global_rank == 0 and not attacked.examples.full else None
        if examples is not None:
            examples.add("clean", pixels, self.describe_predictions(clean, batch))
        for attack in attacked.settings.attacks:
            for eps in attacked.settings.eps:
                outputs, adversarial = clean, pixels  # ε = 0 is the clean pass itself
                if eps > 0:
                    seed = batch_seed(self.config.seed, self.global_rank, batch_index, eps)
                    with torch.inference_mode(False), torch.enable_grad(), parameters_fixed(self):
                        adversarial = perturb(attack, loss_of, pixels, eps, attacked.settings, seed)
                    outputs = self((adversarial - mean) / std)
                self.update_metrics(attacked.metrics[(attack, eps)], outputs, batch)
                if examples is not None and eps == examples.eps:
                    examples.add(attack, adversarial, self.describe_predictions(outputs, batch))

    def on_validation_epoch_start(self) -> None:
        """Fresh metrics for this pass."""
        self._pass = _EvaluationPass(self.new_metrics(), self.device)

    def on_test_epoch_start(self) -> None:
        """Fresh metrics for this pass, and for each attack and ε when evaluation asked for attacks."""
        attacked = AttackedPass(self._attack, self.new_metrics, self.device) if self._attack is not None else None
        self._pass = _EvaluationPass(self.new_metrics(), self.device, attacked)

    def on_validation_epoch_end(self) -> None:
        """Log `val_loss`, `val_<term>` and `val_<metric>`: dataset-wide values (early stopping monitors them)."""
        values, _ = self._finish_pass()
        for key, value in values.items():
            shown = key == "loss" or f"val_{key}" == self.monitor[0]
            self.log(f"val_{key}", value, prog_bar=shown, logger=False)

    def on_test_epoch_end(self) -> None:
        """Keep the pass's values for Task.evaluation."""
        attacked = self._pass.attacked
        values, computed = self._finish_pass()
        robustness = None
        if attacked is not None:
            values |= attacked.values(self.metric_values)
            robustness = Robustness(attacked.settings, self.monitor[0].removeprefix("val_"), attacked.examples)
        self._finished = values, computed, robustness

    def _finish_pass(self) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
        computed = self._pass.metrics.compute()
        computed = computed if isinstance(computed, dict) else {type(self._pass.metrics).__name__: computed}
        values = self._pass.losses.compute() | self.metric_values(computed)
        self._pass = None
        return values, computed

    def on_train_epoch_start(self) -> None:
        """Draw this epoch's shuffling and augmentation; apply the strategy's body freezing."""
        self._clock.start(self.current_epoch, self.global_rank)
        self._train_losses = _LossMeans(self.device)
        plan = self.plan
        frozen = plan.strategy in ("freeze", "features")
        self.set_body_frozen(frozen or (plan.strategy == "finetune" and self.current_epoch < plan.freeze_epochs))

    def on_train_end(self) -> None:
        """A fitted task leaves training with its body trainable again."""
        self.set_body_frozen(False)

    def parameter_groups(self) -> list[dict[str, Any]]:
        """Optimiser groups by identity: the body's parameters (where the strategy trains it), then all others."""
        plan = self.plan
        body_ids = {id(p) for p in self.backbone.parameters()}
        groups = [{"params": [p for p in self.parameters() if id(p) not in body_ids], "lr": plan.lr, "name": "head"}]
        if plan.strategy in ("scratch", "finetune"):
            body_lr = plan.lr * (plan.body_lr_scale if plan.strategy == "finetune" else 1.0)
            groups.insert(0, {"params": list(self.backbone.parameters()), "lr": body_lr, "name": "body"})
        return groups

    def configure_optimizers(self) -> dict[str, Any]:
        """AdamW over `parameter_groups()` with the plan's schedule (one-cycle by default) stepped every batch."""
        groups = self.parameter_groups()
        optimizer = torch.optim.AdamW(groups, weight_decay=self.plan.weight_decay)
        estimated = self.trainer.estimated_stepping_batches
        if self.plan.schedule != "constant" and not math.isfinite(estimated):
            raise ConfigError(
                f"schedule={self.plan.schedule!r} needs the number of training steps, and this data has no length; "
                "use schedule='constant', or give max_steps"
            )
        total_steps = max(1, int(estimated)) if math.isfinite(estimated) else 1
        if self.plan.schedule == "constant":
            schedule: Any = torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
        elif self.plan.schedule == "cosine":
            schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
        else:
            schedule = torch.optim.lr_scheduler.OneCycleLR(
                optimizer,
                max_lr=[group["lr"] for group in groups],
                total_steps=total_steps,
                pct_start=one_cycle_warmup(total_steps),
            )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Our record: format, task, finished epoch; the random state too where training will resume from it."""
        epoch = self.trainer.fit_loop.epoch_progress.current.processed  # epochs whose training has finished
        checkpoint[META_KEY] = meta(self.name, epoch)
        if "optimizer_states" in checkpoint:  # a full training state (last.ckpt): dropout draws continue exactly
            checkpoint[META_KEY]["torch_rng_state"] = torch.get_rng_state()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """When a fit resumes, continue torch's random draws where the interrupted fit left them."""
        state = checkpoint.get(META_KEY, {}).get("torch_rng_state")
        if state is not None and self._trainer is not None and self.trainer.state.fn == "fit":
            torch.set_rng_state(state)

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
        if isinstance(self.model, HeadOnBody):
            self.model.freeze_unread()
        self.train(self.training)

    # ----- data --------------------------------------------------------------------------------------
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
            self._transformed(source, self.eval_transform())[0]
        except VisionHeadsError:
            self._check_data_is_for_this_task(source, keys)  # a clearer reason when the data is another task's
            raise
        return source

    def _check_data_is_for_this_task(self, source: Source, keys: tuple[str, ...]) -> None:
        # Instead of the task's own complaint, whose advice (e.g. "pass num_classes") misleads when the data is
        # another task's: say so in those words.
        sample = source.dataset[0]
        if not isinstance(sample, Mapping):
            return  # require_keys names the problem
        missing = [key for key in keys if key not in sample]
        if not missing:
            return
        given = next((task for key, task in TARGET_KEY_TASKS.items() if key in sample and key not in keys), None)
        if given is not None:
            what = "checkpoint" if self._loaded_from else "task"
            raise DataError(
                f"{source.description}: a {self.name} {what} given {given} data (its samples hold "
                f"{sorted(sample)}, not {missing}); give {self.name} data, or use a {given} {what}"
            )

    def data_loader(
        self, data: Any, *, train: bool, batch_size: int = 32, num_workers: int | None = None
    ) -> DataLoader:
        """Batches of `data` (a Source from `source()`, or any data argument) through the train or eval pipeline."""
        batch_size = whole_number("batch_size", batch_size)
        source = data if isinstance(data, Source) else self.source(data, fitting=train)
        pipeline = self.train_transform(source) if train else self.eval_transform()
        return make_loader(
            self._transformed(source, pipeline, clock=self._clock if train else None),
            batch_size=batch_size,
            collate_fn=self.collate,
            seed=self._config.seed,
            shuffle=self._clock.generator if train else None,
            num_workers=default_workers() if num_workers is None else num_workers,
            drop_last=train and len(source.dataset) > batch_size,  # no 1-sample batch to upset BatchNorm
            batch_sampler=self.train_batch_sampler(source, batch_size) if train else None,
        )

    def train_batch_sampler(self, source: Source, batch_size: int) -> Sampler | None:
        """How training batches are drawn, where a task needs more than shuffling (None: shuffled, batch_size each)."""
        return None

    def _transformed(self, source: Source, pipeline: Any, clock: EpochClock | None = None) -> TransformedDataset:
        return TransformedDataset(
            source.dataset, pipeline=pipeline, to_tensors=self.to_tensors, keys=self.sample_keys(),
            channels=self._config.in_chans, description=source.description, clock=clock,
        )  # fmt: skip

    def feature_loader(self, source: Source, *, train: bool, batch_size: int = 32) -> DataLoader:
        """Batches of the body's pooled features of `source` (run once, eval pipeline) with their targets."""
        if not hasattr(self.head, "pooled") or not hasattr(self.head, "classifier"):
            raise ConfigError(
                f"strategy='features' needs a pooled head (e.g. linear, mlp), not {self._config.head!r}; "
                "strategy='freeze' also trains the head alone"
            )
        device = inference_device()
        self.to(device).eval()
        features, targets = [], []
        with torch.no_grad():  # not inference_mode: the cached tensors are inputs of training steps later
            batches = self.data_loader(source, train=False, batch_size=batch_size, num_workers=0)
            for batch in tqdm(batches, desc=f"features of {source.description}", disable=not sys.stderr.isatty()):
                images = self.model_inputs(batch["image"].to(device))
                features.append(self.head.pooled(self.backbone(images)).float().cpu())
                targets.append({key: value for key, value in batch.items() if key != "image"})
        tensors = {FEATURES: torch.cat(features)} | {key: torch.cat([t[key] for t in targets]) for key in targets[0]}
        return make_loader(
            TensorSamples(tensors),
            batch_size=batch_size,
            collate_fn=default_collate,
            seed=self._config.seed,
            shuffle=self._clock.generator if train else None,
            drop_last=train and len(tensors[FEATURES]) > batch_size,
        )

    # ----- the public workflow -----------------------------------------------------------------------
    def fit(self, train: Any, val: Any = None, **settings: Any) -> History:
        """Train on `train`, validating on `val` (default: a built-in dataset's own val split; False: none).

        `settings` are the fields of `FitSettings` (epochs, batch_size, lr, strategy, patience, devices,
        precision, resume, ...); other `lightning.Trainer` arguments pass through. Writes a run folder and
        returns its History. With validation data the task ends holding its best validated epoch's weights.
        """
        return run_fit(self, train, val, FitSettings.from_arguments(settings))

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
    ) -> Evaluation:
        """One evaluation pass over `data` (Lightning's test loop, on the GPU when there is one, or several
        processes with `devices`/`distributed`): metrics as floats and what they computed, for figures.

        `attack` ("fgsm", "pgd" or both) also scores adversarial versions of the images at each `eps` (an L∞ bound
        on pixels in [0, 1]; default 0, 0.01, 0.02, 0.05, 0.1) as `<metric>@<attack>=<eps>`, e.g.
        `accuracy@fgsm=0.1`; PGD takes `steps` (default 10) of size `alpha` (default 2.5 * eps / steps).
        """
        settings = AttackSettings.from_arguments(attack, eps, steps, alpha)
        if settings is not None and not self.attackable:
            supported = [name for name in list_tasks() if task_class(name).attackable]
            raise ConfigError(f"attacks support the tasks {', '.join(supported)}, not {self.name!r}")
        source = self.source(data)
        loader = self.data_loader(source, train=False, batch_size=batch_size, num_workers=0)
        trainer = build_evaluator(
            accelerator=accelerator, devices=devices, distributed=distributed, precision=precision, progress=progress
        )
        self._attack = settings
        try:
            with quiet_lightning():
                trainer.test(self, datamodule=RunData(test=loader), verbose=False)
        finally:
            self._attack = None
        (values, computed, robustness), self._finished = self._finished, None
        return Evaluation(source, values, computed, robustness)

    def evaluate(self, data: Any, **options: Any) -> dict[str, float]:
        """Metrics of the task on `data` as plain floats under stable names (options as for `evaluation`; with
        `attack`, also each metric under attack as `<metric>@<attack>=<eps>`)."""
        return self.evaluation(data, **options).metrics

    def predict(self, images: Any, *, batch_size: int = 64, compile: bool | str = False) -> list[Any]:
        """Predictions for image files or a folder of them, one HxWxC array, or a batch NxHxWxC; one result per
        image, at its size. Images are read batch by batch. `compile=True` runs the model through torch.compile
        (inductor; a string names another torch.compile backend), compiled on first use and kept by the task."""
        results: list[Any] = []
        with self.fast_inference(compile=compile), torch.inference_mode():
            for batch, sizes in self.image_batches(images, batch_size=batch_size, progress="predict"):
                results += self.decode(self.prediction_outputs(batch), sizes)
        return results

    @contextlib.contextmanager
    def fast_inference(self, *, compile: bool | str = False) -> Iterator[None]:
        """Within the block the model runs in channels-last memory format (the layout the CPU's oneDNN and GPUs'
        tensor cores convolve fastest), through torch.compile when `compile` (the compiled model is cached on the
        task). Training keeps the default layout."""
        model = self.model
        _set_layout(model, torch.channels_last)
        if compile:
            backend = "inductor" if compile is True else str(compile)
            cached = self.__dict__.get("_compiled_model")  # in __dict__: not a submodule, not in the state_dict
            if cached is None or cached[0] != backend:
                self.__dict__["_compiled_model"] = cached = (backend, torch.compile(model, backend=backend))
            self._modules["model"] = cached[1]
        try:
            yield
        finally:
            self._modules["model"] = model
            _set_layout(model, torch.contiguous_format)

    def on_fit_start(self) -> None:
        """fit(channels_last=True) trains in channels-last layout (measured to help some bodies, not all)."""
        if self.plan.channels_last:
            _set_layout(self.model, torch.channels_last)

    def on_fit_end(self) -> None:
        """Back to the default layout after a channels-last fit."""
        if self.plan.channels_last:
            _set_layout(self.model, torch.contiguous_format)

    def on_test_start(self) -> None:
        """evaluate() runs the model in channels-last layout, as predict does."""
        _set_layout(self.model, torch.channels_last)

    def on_test_end(self) -> None:
        """Back to the default layout, which training keeps."""
        _set_layout(self.model, torch.contiguous_format)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Images normalised on the device (`model_inputs`); in evaluate() (and a channels-last fit) in channels-last
        layout, as the model."""
        if not isinstance(batch, dict) or "image" not in batch:
            return batch
        batch["image"] = self.model_inputs(batch["image"])
        trainer = self.trainer
        in_layout = trainer.testing or (self.plan.channels_last and trainer.state.fn == "fit")
        if in_layout and torch.is_tensor(batch["image"]):
            batch["image"] = _channels_last(batch["image"])
        return batch

    def prediction_outputs(self, batch: dict[str, Any]) -> Any:
        """Outputs of a batch of images to predict on (by default as in evaluation)."""
        return self.evaluation_outputs(batch)

    def image_batches(
        self, images: Any, *, batch_size: int = 64, progress: str | None = None
    ) -> Iterator[tuple[dict[str, Any], list[tuple]]]:
        """Batches of images through the eval pipeline, on the inference device (the task moved there and set to
        eval), each with the images' original (height, width). Files are read one batch at a time; `progress`
        names a progress bar over the batches (shown on a terminal)."""
        batch_size = whole_number("batch_size", batch_size)
        items = as_image_list(images, self._config.in_chans)
        pipeline = self.eval_transform()
        device = inference_device()
        with torch.inference_mode(False):  # parameters moved in inference mode could never train again
            self.to(device).eval()
        starts = range(0, len(items), batch_size)
        shown = progress is not None and sys.stderr.isatty() and len(starts) > 1
        for start in tqdm(starts, desc=progress, unit="batch", disable=not shown):
            arrays = self.image_arrays(items[start : start + batch_size], first=start)
            batch = self.collate([{"image": pipeline(image=array)["image"]} for array in arrays])
            batch = {key: _to_device(value, device) for key, value in batch.items()}
            batch["image"] = self.model_inputs(batch["image"])
            yield batch, [array.shape[:2] for array in arrays]

    def image_arrays(self, images: Any, *, first: int = 0) -> list[np.ndarray]:
        """Image paths, one HxWxC array or a batch (N, H, W[, C]) to checked HxWxC uint8 arrays (`first`: the index
        of the first, for messages)."""
        arrays = []
        for index, item in enumerate(as_image_list(images, self._config.in_chans), start=first):
            if isinstance(item, (str, Path)):
                arrays.append(read_image(item, self._config.in_chans))
            else:
                arrays.append(as_image(item, f"images[{index}]", channels=self._config.in_chans))
        return arrays

    def save(self, path: str | Path) -> Path:
        """Write config and weights to one file (atomically); `vh.Task.load` and `load_from_checkpoint` read it."""
        state = {key: value.detach().cpu() for key, value in self.state_dict().items()}
        return write_task_file(path, task=self.name, arguments=self._config.arguments(), state_dict=state)

    @classmethod
    def load(cls, path: str | Path) -> Task:
        """Rebuild a saved task (Task.save, best.pt, last.pt, last.ckpt); read with weights_only=True: no code runs."""
        saved = read_task_file(path)
        arguments = saved.arguments
        if saved.version == 1:
            arguments = task_class(saved.task)._version_1_arguments(arguments)
        task = Task(saved.task, **arguments)
        task._load_state(saved.state_dict, path)
        task._loaded_from = Path(path)
        return task.eval()

    @classmethod
    def _version_1_arguments(cls, arguments: dict[str, Any]) -> dict[str, Any]:
        """The arguments of a version 1 checkpoint that still apply (v1 kept the options of every head)."""
        fields = {f.name for f in dataclasses.fields(cls.config_type)}
        head_options = head_option_defaults(cls.heads[arguments.get("head") or cls.default_head])
        return {key: value for key, value in arguments.items() if key in fields or key in head_options}

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

    # ----- seeing inside --------------------------------------------------------------------------
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
        for batch, sizes in self.image_batches(images, batch_size=batch_size):
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
        arrays = self.image_arrays(image)
        if len(arrays) != 1:
            raise ConfigError(f"feature_maps() takes one image, got {len(arrays)}")
        batch, _ = next(self.image_batches(arrays))
        return self.backbone(batch["image"])[stage][0].float().cpu().numpy()

    def plot_feature_maps(self, image: Any, *, stage: int = -1, path: str | Path | None = None) -> Path:
        """A grid of one image's stage maps (`feature_maps`), each on its own grey scale (PNG); returns its path."""
        from visionheads.viz.inside import plot_feature_maps

        maps = self.feature_maps(image, stage=stage)
        title = f"{self.backbone.name}: stage {stage} maps ({maps.shape[0]} x {maps.shape[1]}x{maps.shape[2]})"
        return plot_feature_maps(maps, self._figure_path(path, f"feature_maps_stage{stage}.png"), title=title)

    def plot_filters(self, path: str | Path | None = None) -> Path:
        """The kernels of the body's first convolution as a grid of tiles (AlexNet's figure 3, PNG); returns its path.

        Three-channel kernels show in colour, others as the grey mean over their input channels.
        """
        from visionheads.viz.inside import plot_kernels

        kernels = first_conv(self.backbone).weight.detach().float().cpu().numpy()  # (out, in, kh, kw)
        count, _, height, width = kernels.shape
        title = f"{self.backbone.name}: first convolution, {count} kernels {height}x{width}"
        return plot_kernels(kernels, self._figure_path(path, "filters.png"), title=title)

    def _figure_path(self, path: str | Path | None, default: str) -> Path:
        # Beside the last fit's other plots, else in the working folder
        if path is not None:
            if not isinstance(path, (str, Path)):
                raise ConfigError(f"path must be a file name (str or Path), got {path!r}")
            return Path(path)
        run_dir = self.history.run_dir if self.history is not None else None
        return Path(run_dir or ".") / default


# The sample key that marks each task's data (tasks whose samples hold only images, or labels as classification's, are
# not told apart by keys).
TARGET_KEY_TASKS = {"mask": "segmentation", "boxes": "detection", "angle": "regression", "label": "classification"}


def _to_device(value: Any, device: torch.device) -> Any:
    """A batch value on `device`: 4-D image batches in channels-last layout, copied without blocking from pinned
    memory to a GPU; lists (e.g. R-CNN's images of several sizes) item by item."""
    if isinstance(value, list):
        return [_to_device(item, device) for item in value]
    if not torch.is_tensor(value):
        return value
    if device.type == "cuda":
        value = value.pin_memory().to(device, non_blocking=True)
    return _channels_last(value.to(device))


def _set_layout(model: nn.Module, layout: torch.memory_format) -> None:
    # Outside inference mode whatever the caller's (Lightning's test loop is inside it): parameters converted
    # in it would become inference tensors, which no later fit could train.
    with torch.inference_mode(False):
        model.to(memory_format=layout)


def _channels_last(value: torch.Tensor) -> torch.Tensor:
    return value.contiguous(memory_format=torch.channels_last) if value.dim() == 4 else value


def one_cycle_warmup(total_steps: int, share: float = 0.2) -> float:
    """The share of steps OneCycleLR warms up for: `share`, unless its warm-up would end exactly on step 1.

    OneCycleLR divides by (share * total_steps - 1), so 5 steps at 0.2 (e.g. 160 images in batches of 32 for one
    epoch) raised ZeroDivisionError in the first step.
    """
    return share if abs(share * total_steps - 1) > 1e-9 else share + 0.5 / total_steps


def _batch_size(batch: dict[str, Any]) -> int:
    first = batch[FEATURES] if FEATURES in batch else batch["image"]
    return len(first)


def _named_totals(losses: dict[str, torch.Tensor], total: torch.Tensor) -> dict[str, torch.Tensor]:
    # `loss` is the sum; the terms are `loss_<term>` (apart from the metrics' names) where there is more than one.
    return {"loss": total} | ({f"loss_{name}": value for name, value in losses.items()} if len(losses) > 1 else {})
