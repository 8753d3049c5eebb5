"""The LightningModule a run builds around a task: the steps, the optimiser and its schedule, the transfer
strategy's body freezing, the state of evaluation passes, and the attack step. Everything it needs comes in through
its constructor (the task, the training plan, the sources it evaluates, attack settings, where a pass's results go);
the task's hooks get what they need as arguments.

`task.lightning_module(...)` hands one out to users who bring their own `lightning.Trainer`; `Task.fit` and
`Task.evaluation` build their own. Its checkpoints hold the task's weights under the task's own keys (`model.*`)
and the task's config as Lightning's hyperparameters, so `vh.Task.load` and `TaskModule.load_from_checkpoint`
read them as they read `Task.save`'s files.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning as L
import torch
from lightning.fabric.utilities.data import AttributeDict

from visionheads.data.catalog import Source
from visionheads.data.pipeline import EpochClock
from visionheads.errors import ConfigError, TrainingError
from visionheads.runtime.attacks import AttackedPass, AttackSettings, Robustness, attack_batch
from visionheads.runtime.checkpoint import META_KEY, meta, read_task_file
from visionheads.runtime.inference import channels_last, set_layout
from visionheads.runtime.passes import Evaluation, EvaluationPass, LossMeans, batch_length, named_totals
from visionheads.runtime.registry import task_class
from visionheads.runtime.tta import averaged_outputs

if TYPE_CHECKING:
    from visionheads.runtime.protocol import RunnableTask

STRATEGIES = ("scratch", "features", "freeze", "finetune")
SCHEDULES = ("onecycle", "cosine", "constant")
FINETUNE_BODY_LR_SCALE = 0.1  # pretrained bodies move slower than fresh heads (Keras / timm fine-tuning practice)


@dataclass(frozen=True)
class TrainingPlan:
    """How a run trains: the optimiser's settings, the transfer strategy and the learning-rate schedule."""

    lr: float = 1e-3
    weight_decay: float = 0.01
    strategy: str = "scratch"  # scratch | features | freeze | finetune
    freeze_epochs: int = 0  # finetune: epochs with the body frozen before it trains at body_lr_scale * lr
    body_lr_scale: float = FINETUNE_BODY_LR_SCALE
    schedule: str = "onecycle"  # onecycle | cosine | constant, stepped every batch
    channels_last: bool = False  # train (and validate) with the model and images in channels-last layout

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"unknown strategy {self.strategy!r}; use one of {STRATEGIES}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"unknown schedule {self.schedule!r}; use one of {SCHEDULES}")
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not self.lr > 0:
            raise ConfigError(f"lr must be a number > 0, got {self.lr!r}")


class TaskModule(L.LightningModule):
    """A task under a Lightning Trainer: its steps, optimiser and schedule as `plan` says, validation on `val` and
    test passes (`Task.evaluation`) on `test`, each pass's `Evaluation` handed to `report`.

    Args:
        task: the task whose model trains (the module shares it: what trains is the task's own model).
        plan: optimiser, schedule and transfer strategy.
        val: the data validation batches come from (for metrics that need the whole dataset, e.g. a COCO file);
            None: the metrics judge the batches alone.
        test: the same for test passes.
        attack: adversarial attacks that test passes also score.
        clock: the run's epoch clock, which its training loader shuffles and augments by (started every epoch).
        report: called with the `Evaluation` of every finished test pass.
    """

    def __init__(
        self,
        task: RunnableTask,
        plan: TrainingPlan | None = None,
        *,
        val: Source | None = None,
        test: Source | None = None,
        attack: AttackSettings | None = None,
        clock: EpochClock | None = None,
        report: Callable[[Evaluation], None] | None = None,
        tta: bool = False,
    ) -> None:
        super().__init__()
        # Not a submodule: the checkpoint holds the model's weights under `model.`, the keys of Task.save's files.
        object.__setattr__(self, "task", task)
        self.model = task.model
        self.plan = plan or TrainingPlan()
        self.val_source, self.test_source, self.attack = val, test, attack
        self.clock = clock or EpochClock(task.config.seed)
        self.report = report
        self.tta = tta  # test passes score the task's averaged test-time views
        self.body_frozen = False
        self.train_losses = LossMeans(torch.device("cpu"))
        self.evaluation_pass: EvaluationPass | None = None

    @property
    def hparams(self) -> AttributeDict:
        """The task's config as Lightning hyperparameters (what checkpoints store, and load_from_checkpoint reads)."""
        return AttributeDict(name=self.task.name, **self.task.config.arguments())

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: str | Path, *args: Any, **kwargs: Any) -> TaskModule:
        """The task of any checkpoint (Task.save, best.pt, last.pt, last.ckpt) in a module with the default plan;
        read with weights_only=True (no code runs). Lightning's other arguments do not apply."""
        return cls(task_class(read_task_file(checkpoint_path).task).load(checkpoint_path))

    def forward(self, images: torch.Tensor) -> Any:
        """images: float normalised, shape (B, in_chans, H, W). Returns: the task's outputs."""
        return self.task(images)

    def setup(self, stage: str) -> None:
        """Train the task's model as it is now (learning classes from data may have rebuilt it since)."""
        self.model = self.task.model

    # ----- training ------------------------------------------------------------------------------------------
    def training_step(self, batch: dict[str, Any], batch_index: int) -> torch.Tensor:
        """The task's loss terms and their sum, which is optimised; their epoch means become train_* values."""
        losses = self.task.training_losses(batch, self.current_epoch)
        total = torch.stack(list(losses.values())).sum()
        self._stop_unless_finite(total, batch_index)
        self.train_losses.update(named_totals(losses, total), batch_length(batch))
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

    def on_train_epoch_start(self) -> None:
        """Draw this epoch's shuffling and augmentation; apply the strategy's body freezing."""
        self.clock.start(self.current_epoch, self.global_rank)
        self.train_losses = LossMeans(self.device)
        plan = self.plan
        frozen = plan.strategy in ("freeze", "features") or (
            plan.strategy == "finetune" and self.current_epoch < plan.freeze_epochs
        )
        self.set_body_frozen(frozen)

    def on_train_epoch_end(self) -> None:
        """Log `train_loss` (and `train_loss_<term>`): means over the epoch's samples, on every process."""
        for name, value in self.train_losses.compute().items():
            self.log(f"train_{name}", value, logger=False)

    def on_train_end(self) -> None:
        """A fitted task leaves training with its body trainable again."""
        self.set_body_frozen(False)

    def set_body_frozen(self, frozen: bool) -> None:
        """Freeze (or unfreeze) the task's body: no gradients, and BatchNorm in eval mode (see `train`)."""
        self.body_frozen = frozen
        self.task.model.set_body_trainable(not frozen)
        self.train(self.training)

    def train(self, mode: bool = True) -> TaskModule:
        """As nn.Module.train, but a frozen body stays in eval mode (it keeps its BatchNorm statistics)."""
        super().train(mode)
        if self.body_frozen:
            self.task.backbone.eval()
        return self

    def parameter_groups(self) -> list[dict[str, Any]]:
        """Optimiser groups by identity: the body's parameters (where the strategy trains it), then all others."""
        plan = self.plan
        body_ids = {id(p) for p in self.task.backbone.parameters()}
        groups = [{"params": [p for p in self.parameters() if id(p) not in body_ids], "lr": plan.lr, "name": "head"}]
        if plan.strategy in ("scratch", "finetune"):
            body_lr = plan.lr * (plan.body_lr_scale if plan.strategy == "finetune" else 1.0)
            groups.insert(0, {"params": list(self.task.backbone.parameters()), "lr": body_lr, "name": "body"})
        return groups

    def configure_optimizers(self) -> dict[str, Any]:
        """AdamW over `parameter_groups()` with the plan's schedule (one-cycle by default) stepped every batch."""
        plan = self.plan
        groups = self.parameter_groups()
        # torch's fused kernel updates every tensor at once: on the CPU, 8 against 23 ms a step for a 5M-parameter
        # U-Net (bench/README.md); torch has it for CPU and CUDA tensors.
        fused = self.device.type in ("cpu", "cuda")
        optimizer = torch.optim.AdamW(groups, weight_decay=plan.weight_decay, fused=fused)
        estimated = self.trainer.estimated_stepping_batches
        if plan.schedule != "constant" and not math.isfinite(estimated):
            raise ConfigError(
                f"schedule={plan.schedule!r} needs the number of training steps, and this data has no length; "
                "use schedule='constant', or give max_steps"
            )
        total_steps = max(1, int(estimated)) if math.isfinite(estimated) else 1
        if plan.schedule == "constant":
            schedule: Any = torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
        elif plan.schedule == "cosine":
            schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
        else:
            schedule = torch.optim.lr_scheduler.OneCycleLR(
                optimizer,
                max_lr=[group["lr"] for group in groups],
                total_steps=total_steps,
                pct_start=one_cycle_warmup(total_steps),
            )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    # ----- evaluation: one step for validation and test ------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        """Fresh metrics for this pass."""
        self.evaluation_pass = EvaluationPass(self.task.new_metrics(self.val_source), self.device)

    def on_test_epoch_start(self) -> None:
        """Fresh metrics for this pass, and for each attack and ε when attacks are asked for."""
        attacked = None
        if self.attack is not None:
            attacked = AttackedPass(self.attack, lambda: self.task.new_metrics(self.test_source), self.device)
        self.evaluation_pass = EvaluationPass(self.task.new_metrics(self.test_source), self.device, attacked)

    def validation_step(self, batch: dict[str, Any], batch_index: int) -> None:
        """The shared evaluation step."""
        self._evaluation_step(self.evaluation_pass, batch)

    def test_step(self, batch: dict[str, Any], batch_index: int) -> None:
        """The shared evaluation step, and the attacks the pass asks for."""
        evaluation_pass = self.evaluation_pass
        outputs = self._evaluation_step(evaluation_pass, batch)
        if evaluation_pass.attacked is not None:
            attack_batch(self.task, evaluation_pass.attacked, batch, outputs, rank=self.global_rank,
                         batch_index=batch_index)  # fmt: skip

    def _evaluation_step(self, evaluation_pass: EvaluationPass, batch: dict[str, Any]) -> Any:
        task = self.task
        outputs = averaged_outputs(task, batch, task.evaluation_outputs) if self.tta else task.evaluation_outputs(batch)
        losses = task.evaluation_losses(outputs, batch)
        if losses:
            total = torch.stack(list(losses.values())).sum()
            evaluation_pass.losses.update(named_totals(losses, total), batch_length(batch))
        task.update_metrics(evaluation_pass.metrics, outputs, batch)
        return outputs

    def on_validation_epoch_end(self) -> None:
        """Log `val_loss`, `val_<term>` and `val_<metric>`: dataset-wide values (early stopping monitors them)."""
        values, _ = self.evaluation_pass.finish(self.task.metric_values)
        self.evaluation_pass = None
        for key, value in values.items():
            shown = key == "loss" or f"val_{key}" == self.task.monitor[0]
            self.log(f"val_{key}", value, prog_bar=shown, logger=False)

    def on_test_epoch_end(self) -> None:
        """Log `test_<metric>` and hand the pass's `Evaluation` to `report`."""
        evaluation_pass, self.evaluation_pass = self.evaluation_pass, None
        values, computed = evaluation_pass.finish(self.task.metric_values)
        robustness = None
        attacked = evaluation_pass.attacked
        if attacked is not None:
            values |= attacked.values(self.task.metric_values)
            robustness = Robustness(attacked.settings, self.task.monitor[0].removeprefix("val_"), attacked.examples)
        for key, value in values.items():
            self.log(f"test_{key}", value)
        if self.report is not None:
            self.report(Evaluation(self.test_source, values, computed, robustness))

    # ----- layout, batches, checkpoints ----------------------------------------------------------------------
    def on_fit_start(self) -> None:
        """plan.channels_last trains in channels-last layout (measured to help some bodies, not all)."""
        if self.plan.channels_last:
            set_layout(self.model, torch.channels_last)

    def on_fit_end(self) -> None:
        """Back to the default layout after a channels-last fit."""
        if self.plan.channels_last:
            set_layout(self.model, torch.contiguous_format)

    def on_test_start(self) -> None:
        """Test passes run the model in channels-last layout, as predict does."""
        set_layout(self.model, torch.channels_last)

    def on_test_end(self) -> None:
        """Back to the default layout, which training keeps."""
        set_layout(self.model, torch.contiguous_format)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Images normalised on the device (the task's `model_inputs`); in test passes (and a channels-last fit) in
        channels-last layout, as the model."""
        if not isinstance(batch, dict) or "image" not in batch:
            return batch
        batch["image"] = self.task.model_inputs(batch["image"])
        trainer = self.trainer
        in_layout = trainer.testing or (self.plan.channels_last and trainer.state.fn == "fit")
        if in_layout and torch.is_tensor(batch["image"]):
            batch["image"] = channels_last(batch["image"])
        return batch

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Our record: format, task, finished epoch; the random state too where training will resume from it."""
        epoch = self.trainer.fit_loop.epoch_progress.current.processed  # epochs whose training has finished
        checkpoint[META_KEY] = meta(self.task.name, epoch)
        if "optimizer_states" in checkpoint:  # a full training state (last.ckpt): dropout draws continue exactly
            checkpoint[META_KEY]["torch_rng_state"] = torch.get_rng_state()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """When a fit resumes, continue torch's random draws where the interrupted fit left them."""
        state = checkpoint.get(META_KEY, {}).get("torch_rng_state")
        if state is not None and self._trainer is not None and self.trainer.state.fn == "fit":
            torch.set_rng_state(state)


def one_cycle_warmup(total_steps: int, share: float = 0.2) -> float:
    """The share of steps OneCycleLR warms up for: `share`, unless its warm-up would end exactly on step 1.

    OneCycleLR divides by (share * total_steps - 1), so 5 steps at 0.2 (e.g. 160 images in batches of 32 for one
    epoch) raised ZeroDivisionError in the first step.
    """
    return share if abs(share * total_steps - 1) > 1e-9 else share + 0.5 / total_steps
