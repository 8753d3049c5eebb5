"""One training run: `FitSettings` (every argument of `Task.fit`, declared once) and the driver that runs it.

The driver resolves the data, makes the run folder, builds the run's TaskModule (with the training plan, its
validation source and its epoch clock) and the Trainer, resumes, restores the best epoch and draws the plots.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import os
import shutil
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning as L
import torch.distributed as dist
import yaml

from visionheads._atomic import NO_ROOM, remove_leftovers
from visionheads.data.catalog import Source, report_left_out
from visionheads.data.pipeline import EpochClock
from visionheads.engine import (
    BEST_WEIGHTS,
    LAST_WEIGHTS,
    RESUME_CHECKPOINT,
    RunData,
    RunRecord,
    build_trainer,
    launched_as_another_process,
    new_run_dir,
    objects_frozen,
    quiet_lightning,
)
from visionheads.errors import ConfigError, DataError, TrainingError, whole_number
from visionheads.runtime.checkpoint import record_arguments
from visionheads.runtime.evaluation import evaluate_source
from visionheads.runtime.features import feature_loader
from visionheads.runtime.history import History
from visionheads.runtime.loaders import data_loader
from visionheads.runtime.module import SCHEDULES, STRATEGIES, TaskModule, TrainingPlan
from visionheads.runtime.resuming import check_resumable, resume_checkpoint
from visionheads.trackers import publish_run_folder

if TYPE_CHECKING:
    from visionheads.runtime.protocol import RunnableTask

CHECKPOINTS = (RESUME_CHECKPOINT, BEST_WEIGHTS, LAST_WEIGHTS)


@dataclass(frozen=True)
class FitSettings:
    """The arguments of `Task.fit` after the data; any other `lightning.Trainer` argument goes to `trainer`."""

    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.01
    strategy: str = "auto"  # auto: finetune for pretrained weights, else scratch
    schedule: str = "onecycle"  # the learning rate over the fit, stepped every batch: onecycle, cosine, constant
    patience: int | None = None  # early stopping after this many validations without improvement of the monitor
    # Validation after every val_every-th epoch and after the last (Keras' validation_freq): the epochs between
    # have train_* values only, and the best epoch is chosen among the validated ones.
    val_every: int = 1
    accelerator: str = "auto"  # auto: gpu when CUDA is present, else cpu
    devices: int | str | list[int] = "auto"
    precision: str | int = "auto"  # auto: bf16 (or fp16) mixed on GPUs, float32 on the CPU
    distributed: str = "auto"  # Lightning's strategy, e.g. "ddp"
    num_workers: int | None = None  # DataLoader workers; None: chosen from the machine
    project: str | Path = "runs"  # runs/<task>/<name>
    name: str | None = None  # the run folder's name; None: a timestamp
    plots: bool = True
    progress: bool | None = None  # a progress bar (default: when stderr is a terminal), else one line per epoch
    resume: str | Path | None = None  # the run folder (or last.ckpt) of an interrupted fit to continue
    # Channels-last layout while training: faster for some bodies and sizes, slower for others (measure it;
    # docs/segmentation.md has SegNet's numbers). evaluate and predict always use it.
    channels_last: bool = False
    checkpoint_every: float = 10.0  # seconds of training between two saves of last.ckpt (0: after every epoch)
    callbacks: tuple[L.Callback, ...] = ()
    trainer: dict[str, Any] = field(default_factory=dict)  # further lightning.Trainer arguments

    def __post_init__(self) -> None:
        if self.strategy not in ("auto", *STRATEGIES):
            raise ConfigError(f"unknown strategy {self.strategy!r}; use one of {('auto', *STRATEGIES)}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"unknown schedule {self.schedule!r}; use one of {SCHEDULES}")
        for name in ("epochs", "batch_size", "val_every"):
            whole_number(name, getattr(self, name))
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not self.lr > 0:
            raise ConfigError(f"lr must be a number > 0, got {self.lr!r}")
        if not isinstance(self.channels_last, bool):
            raise ConfigError(f"channels_last must be True or False, got {self.channels_last!r}")
        if not isinstance(self.checkpoint_every, (int, float)) or self.checkpoint_every < 0:
            raise ConfigError(f"checkpoint_every must be a number of seconds >= 0, got {self.checkpoint_every!r}")

    @classmethod
    def from_arguments(cls, arguments: dict[str, Any]) -> FitSettings:
        """Settings from fit's keyword arguments: our fields, then Trainer arguments; anything else raises."""
        names, trainer_names = fit_argument_names()
        ours = {key: value for key, value in arguments.items() if key in names}
        passed = {key: value for key, value in arguments.items() if key not in names and key in trainer_names}
        if "check_val_every_n_epoch" in passed:  # Lightning's would skip the last epoch when it does not divide
            raise ConfigError(
                f"use val_every={passed['check_val_every_n_epoch']!r} instead of check_val_every_n_epoch: it "
                "validates after every N-th epoch and always after the last one"
            )
        unknown = sorted(set(arguments) - set(ours) - set(passed))
        if unknown:
            close = difflib.get_close_matches(unknown[0], sorted(names | trainer_names), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"fit has no argument {unknown[0]!r}{hint} (fit takes {', '.join(sorted(names))})")
        if "callbacks" in ours:
            ours["callbacks"] = tuple(ours["callbacks"] or ())
        return cls(**ours, trainer=passed)

    def record(self) -> dict[str, Any]:
        """The settings as plain data, for the run's config.yaml."""
        skipped = ("callbacks", "trainer")
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in skipped}
        return {key: str(value) if isinstance(value, Path) else value for key, value in values.items()}


def fit_argument_names() -> tuple[set[str], set[str]]:
    """The names fit takes: its own settings, and the lightning.Trainer arguments it passes on."""
    ours = {f.name for f in dataclasses.fields(FitSettings)} - {"trainer"}
    return ours, set(inspect.signature(L.Trainer.__init__).parameters) - {"self"}


def run_fit(task: RunnableTask, train: Any, val: Any, settings: FitSettings) -> History:
    """Train `task` as `settings` say and return the History; see Task.fit."""
    checkpoint = resume_checkpoint(settings.resume) if settings.resume else None
    L.seed_everything(task.config.seed, verbose=False)  # dropout and the like; a resumed fit restores its own state
    train_source = task.source(train, fitting=True)
    if len(train_source.dataset) < 2:  # a batch of one breaks BatchNorm, and one sample teaches nothing general
        raise DataError(f"{train_source.description}: 1 training sample; training needs at least 2")
    if val is None and train_source.val and train_source.description.endswith(":train"):
        val = train_source.val
    val_source = task.source(val) if val is not None and val is not False else None
    report_left_out(train_source, val_source)  # one line per reason: nothing is left out in silence
    plan = training_plan(settings, pretrained=task.config.pretrained is not None)
    clock = EpochClock(task.config.seed)  # the run's epochs: shuffling and augmentation draws follow it
    loaders = [_loader(task, source, source is train_source, plan, settings, clock)
               for source in (train_source, val_source) if source is not None]  # fmt: skip
    data = {"train": train_source.description, "val": val_source.description if val_source else None}
    if checkpoint is not None:  # before anything in its folder is touched
        defaults = {f.name: f.default for f in dataclasses.fields(task.config) if f.default is not dataclasses.MISSING}
        check_resumable(task.name, task.config.arguments(), task.state_dict(), checkpoint, settings.record() | data,
                        defaults, fitted=task.fitted_fields)  # fmt: skip
    first = not launched_as_another_process()  # under DDP, only the first process makes and fills the run folder
    if checkpoint is not None:
        run_dir = checkpoint.parent
        if first:  # half-written temporary files of a fit killed while it saved: never read, only in the way
            remove_leftovers(run_dir, CHECKPOINTS)
    elif first:
        run_dir = new_run_dir(settings.project, task.name, settings.name)
    else:
        run_dir = Path(settings.project) / task.name / "(the first process's run folder)"  # learnt in RunRecord.setup
    module = TaskModule(task, plan, val=val_source, clock=clock)
    try:
        trainer, record = _train(module, loaders, run_dir, checkpoint, settings, data, val_source is not None, first)
    except BaseException:
        if first and checkpoint is None and not any((run_dir / name).is_file() for name in CHECKPOINTS):
            shutil.rmtree(run_dir, ignore_errors=True)  # a failed fit leaves no folder holding only its config
        raise
    run_dir, rows, monitor = record.run_dir, record.rows, record.monitor
    trainer.strategy.barrier("visionheads: checkpoints written")  # the first process's writes end at its teardown
    best_here = first or (run_dir / BEST_WEIGHTS).is_file()  # other nodes may not share the run's file system
    if val_source is not None and record.best_epoch not in (None, rows[-1]["epoch"]) and best_here:
        task.load_weights(run_dir / BEST_WEIGHTS)  # keep the best validated epoch, as Keras' restore_best_weights
    history = History(list(rows), run_dir, record.best_epoch, monitor)
    fitted = task.fitted_config(history)  # what a task learns from the fit itself (a threshold, say)
    if fitted:
        task.set_config(**fitted)
        for name in CHECKPOINTS if first else ():  # the run's files hold it too: each loads as the fitted task
            if (run_dir / name).is_file():
                record_arguments(run_dir / name, task.config.arguments())
    if settings.plots:
        # Every process takes part in the evaluation (its metrics are synced across them); the first one draws.
        evaluation = evaluate_source(task, val_source, accelerator=settings.accelerator, devices=settings.devices,
                                     distributed=settings.distributed) if val_source is not None else None  # fmt: skip
        if trainer.is_global_zero:
            task.plot(run_dir, data=evaluation, history=history)
    if trainer.is_global_zero:
        publish_run_folder(trainer.loggers, run_dir)  # to the trackers that keep files (MLflow, W&B)
        print(f"results saved to {run_dir}", file=sys.stderr)
    return history


def training_plan(settings: FitSettings, *, pretrained: bool) -> TrainingPlan:
    """The plan of a fit: its optimiser settings, its strategy ("auto": finetune a pretrained body, else scratch)
    and, for finetune, the first fifth of the epochs (at least one) with the body frozen."""
    strategy = settings.strategy
    if strategy == "auto":
        strategy = "finetune" if pretrained else "scratch"
    freeze_epochs = max(1, settings.epochs // 5) if strategy == "finetune" and settings.epochs > 1 else 0
    return TrainingPlan(lr=settings.lr, weight_decay=settings.weight_decay, strategy=strategy,
                        freeze_epochs=freeze_epochs, schedule=settings.schedule,
                        channels_last=settings.channels_last)  # fmt: skip


def _loader(
    task: RunnableTask, source: Source, train: bool, plan: TrainingPlan, settings: FitSettings, clock: EpochClock
) -> Any:
    if plan.strategy == "features":
        return feature_loader(task, source, train=train, batch_size=settings.batch_size, clock=clock)
    return data_loader(task, source, train=train, batch_size=settings.batch_size, num_workers=settings.num_workers,
                       clock=clock)  # fmt: skip


def _train(
    module: TaskModule,
    loaders: list[Any],
    run_dir: Path,
    checkpoint: Path | None,
    settings: FitSettings,
    data: dict[str, Any],
    validated: bool,
    first: bool,
) -> tuple[L.Trainer, RunRecord]:
    """Write the run's config (a new run), build the Trainer and run it; an interrupted fit says how to resume."""
    task = module.task
    record = {"task": {"name": task.name, **task.config.arguments()}, "fit": settings.record() | data}
    if checkpoint is None and first:
        (run_dir / "config.yaml").write_text(yaml.safe_dump(record, sort_keys=False))
    monitor, mode = task.monitor if validated else ("train_loss", "min")
    trainer, run_record = build_trainer(
        run_dir=run_dir, experiment=task.name, epochs=settings.epochs, monitor=monitor, mode=mode,
        accelerator=settings.accelerator,
        devices=settings.devices, precision=settings.precision, distributed=settings.distributed,
        patience=settings.patience, val_every=settings.val_every, callbacks=list(settings.callbacks),
        progress=settings.progress,
        checkpoint_every=settings.checkpoint_every, fixed_input_size=task.fixed_input_size, **settings.trainer,
    )  # fmt: skip
    if checkpoint is not None and first:
        print(f"resuming from {checkpoint}", file=sys.stderr)
    for logger in trainer.loggers[1:]:  # the trackers beside our metrics.csv (config.yaml holds the same)
        logger.log_hyperparams(record["task"] | record["fit"])
    try:
        with quiet_lightning(), objects_frozen():
            # weights_only: a checkpoint file is data, never code (optimizer, loops and history are plain values).
            trainer.fit(module, datamodule=RunData(*loaders), ckpt_path=checkpoint, weights_only=True)
    except TrainingError:
        raise  # resuming would diverge again: its message says what to change instead
    except OSError as error:
        if error.errno not in NO_ROOM:
            _say_how_to_resume(run_dir)
            raise
        # One line instead of Lightning's trace (the write fails in its checkpoint thread and is re-raised later).
        raise TrainingError(
            f"fit stopped: the disk is full, {error.filename or run_dir} could not be written "
            f"({os.strerror(error.errno)}); the files saved before are unchanged. Free some space, then "
            f"{_how_to_resume(run_record.run_dir)}"
        ) from None
    except RuntimeError as error:
        if checkpoint is not None and "state_dict" in str(error):
            raise ConfigError(f"{checkpoint}: the checkpoint does not fit this task's model ({error})") from error
        if _another_process_ended(error):
            raise TrainingError(
                f"fit stopped: another of its {dist.get_world_size()} processes ended, so this one stops too "
                f"({str(error).splitlines()[0]}); that process's own output says why. Then "
                f"{_how_to_resume(run_record.run_dir)}"  # under DDP, the first process's folder (RunRecord.setup)
            ) from None
        _say_how_to_resume(run_dir)
        raise
    except SystemExit as stop:  # Lightning's graceful shutdown after Ctrl-C (exit 1) or SIGTERM (exit 0)
        _say_how_to_resume(run_dir)
        if run_record.interrupted == signal.SIGINT:
            raise KeyboardInterrupt from stop  # the CLI exits 130, as shells expect after Ctrl-C
        if run_record.interrupted == signal.SIGTERM:
            raise SystemExit(128 + signal.SIGTERM) from stop  # 143: killed by SIGTERM, yet with its state saved
        raise
    except BaseException:
        _say_how_to_resume(run_dir)
        raise
    return trainer, run_record


def _say_how_to_resume(run_dir: Path) -> None:
    if (run_dir / RESUME_CHECKPOINT).is_file():
        print(
            f"fit stopped; {run_dir} keeps every finished epoch. Continue with {_resume_call(run_dir)}", file=sys.stderr
        )


def _how_to_resume(run_dir: Path) -> str:
    if (run_dir / RESUME_CHECKPOINT).is_file():
        return f"continue with {_resume_call(run_dir)}"
    return "start the fit again (no epoch was saved)"


def _resume_call(run_dir: Path) -> str:
    return f"fit(..., resume={str(run_dir)!r}) or `visionheads fit RECIPE resume={run_dir}`"


def _another_process_ended(error: RuntimeError) -> bool:
    # A collective whose peer process is gone: gloo raises a RuntimeError ("Connection reset by peer", "closed by
    # peer") from its transport, NCCL and newer torch a DistError.
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return False
    return isinstance(error, dist.DistError) or "gloo/transport" in str(error)
