"""One training run: `FitSettings` (every argument of `Task.fit`, declared once) and the driver that runs it.

The driver resolves the data, makes the run folder, builds the Trainer, resumes, and restores the best epoch, using
only the public methods of a task (the `Fittable` protocol below); the task itself owns the steps and the optimiser.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import shutil
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import lightning as L
import yaml

from visionheads.data.catalog import Source, report_left_out
from visionheads.engine import (
    BEST_WEIGHTS,
    LAST_WEIGHTS,
    RESUME_CHECKPOINT,
    RunData,
    RunRecord,
    build_trainer,
    launched_as_another_process,
    new_run_dir,
    quiet_lightning,
)
from visionheads.errors import ConfigError, DataError, TrainingError, whole_number
from visionheads.tasks.history import History
from visionheads.tasks.resuming import check_resumable, resume_checkpoint

STRATEGIES = ("auto", "scratch", "features", "freeze", "finetune")
SCHEDULES = ("onecycle", "cosine", "constant")
CHECKPOINTS = (RESUME_CHECKPOINT, BEST_WEIGHTS, LAST_WEIGHTS)
FINETUNE_BODY_LR_SCALE = 0.1  # pretrained bodies move slower than fresh heads (Keras / timm fine-tuning practice)


@dataclass(frozen=True)
class TrainingPlan:
    """How a task's configure_optimizers trains; fit sets it, and its defaults serve a Trainer users bring."""

    lr: float = 1e-3
    weight_decay: float = 0.01
    strategy: str = "scratch"  # scratch | features | freeze | finetune
    freeze_epochs: int = 0  # finetune: epochs with the body frozen before it trains at body_lr_scale * lr
    body_lr_scale: float = FINETUNE_BODY_LR_SCALE
    schedule: str = "onecycle"  # onecycle | cosine | constant, stepped every batch
    channels_last: bool = False  # train (and validate) with the model and images in channels-last layout


@dataclass(frozen=True)
class FitSettings:
    """The arguments of `Task.fit` after the data; any other `lightning.Trainer` argument goes to `trainer`."""

    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.01
    strategy: str = "auto"  # auto: finetune for pretrained weights, else scratch
    schedule: str = "onecycle"  # the learning rate over the fit, stepped every batch: onecycle, cosine, constant
    patience: int | None = None  # early stopping after this many epochs without improvement of the monitor
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
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"unknown strategy {self.strategy!r}; use one of {STRATEGIES}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"unknown schedule {self.schedule!r}; use one of {SCHEDULES}")
        for name in ("epochs", "batch_size"):
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


class Fittable(Protocol):
    """What the driver uses of a task: its public surface only."""

    name: str
    monitor: tuple[str, str]
    plan: TrainingPlan
    history: History | None
    fixed_input_size: bool

    @property
    def config(self) -> Any: ...

    def source(self, data: Any, *, fitting: bool = False) -> Source: ...

    def data_loader(self, data: Any, *, train: bool, batch_size: int = 32, num_workers: int | None = None) -> Any: ...

    def feature_loader(self, source: Source, *, train: bool, batch_size: int = 32) -> Any: ...

    def load_weights(self, path: str | Path) -> None: ...

    def evaluation(self, data: Any, **options: Any) -> Any: ...

    def plot(self, out_dir: Any = None, data: Any = None, *, history: History | None = None) -> list[Path]: ...

    def state_dict(self) -> dict[str, Any]: ...


def run_fit(task: Fittable, train: Any, val: Any, settings: FitSettings) -> History:
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
    strategy = settings.strategy
    if strategy == "auto":
        strategy = "finetune" if task.config.pretrained else "scratch"
    freeze_epochs = max(1, settings.epochs // 5) if strategy == "finetune" and settings.epochs > 1 else 0
    task.plan = TrainingPlan(lr=settings.lr, weight_decay=settings.weight_decay, strategy=strategy,
                             freeze_epochs=freeze_epochs, schedule=settings.schedule,
                             channels_last=settings.channels_last)  # fmt: skip
    if strategy == "features":
        loaders = [task.feature_loader(s, train=s is train_source, batch_size=settings.batch_size)
                   for s in (train_source, val_source) if s is not None]  # fmt: skip
    else:
        loaders = [task.data_loader(s, train=s is train_source, batch_size=settings.batch_size,
                                    num_workers=settings.num_workers)
                   for s in (train_source, val_source) if s is not None]  # fmt: skip
    data = {"train": train_source.description, "val": val_source.description if val_source else None}
    if checkpoint is not None:  # before anything in its folder is touched
        defaults = {f.name: f.default for f in dataclasses.fields(task.config) if f.default is not dataclasses.MISSING}
        check_resumable(task.name, task.config.arguments(), task.state_dict(), checkpoint, settings.record() | data,
                        defaults)  # fmt: skip
    first = not launched_as_another_process()  # under DDP, only the first process makes and fills the run folder
    if checkpoint is not None:
        run_dir = checkpoint.parent
    elif first:
        run_dir = new_run_dir(settings.project, task.name, settings.name)
    else:
        run_dir = Path(settings.project) / task.name / "(the first process's run folder)"  # learnt in RunRecord.setup
    try:
        trainer, record = _train(task, loaders, run_dir, checkpoint, settings, data, val_source is not None, first)
    except BaseException:
        if first and checkpoint is None and not any((run_dir / name).is_file() for name in CHECKPOINTS):
            shutil.rmtree(run_dir, ignore_errors=True)  # a failed fit leaves no folder holding only its config
        raise
    run_dir, rows, monitor = record.run_dir, record.rows, record.monitor
    trainer.strategy.barrier("visionheads: checkpoints written")  # the first process's writes end at its teardown
    best_here = first or (run_dir / BEST_WEIGHTS).is_file()  # other nodes may not share the run's file system
    if val_source is not None and record.best_epoch not in (None, rows[-1]["epoch"]) and best_here:
        task.load_weights(run_dir / BEST_WEIGHTS)  # keep the best validated epoch, as Keras' restore_best_weights
    task.history = History(list(rows), run_dir, record.best_epoch, monitor)
    if settings.plots:
        # Every process takes part in the evaluation (its metrics are synced across them); the first one draws.
        evaluation = task.evaluation(val_source, accelerator=settings.accelerator, devices=settings.devices,
                                     distributed=settings.distributed) if val_source is not None else None  # fmt: skip
        if trainer.is_global_zero:
            task.plot(run_dir, data=evaluation, history=task.history)
    if trainer.is_global_zero:
        print(f"results saved to {run_dir}", file=sys.stderr)
    return task.history


def _train(
    task: Fittable,
    loaders: list[Any],
    run_dir: Path,
    checkpoint: Path | None,
    settings: FitSettings,
    data: dict[str, Any],
    validated: bool,
    first: bool,
) -> tuple[L.Trainer, RunRecord]:
    """Write the run's config (a new run), build the Trainer and run it; an interrupted fit says how to resume."""
    if checkpoint is None and first:
        record = {"task": {"name": task.name, **task.config.arguments()}, "fit": settings.record() | data}
        (run_dir / "config.yaml").write_text(yaml.safe_dump(record, sort_keys=False))
    monitor, mode = task.monitor if validated else ("train_loss", "min")
    trainer, run_record = build_trainer(
        run_dir=run_dir, epochs=settings.epochs, monitor=monitor, mode=mode, accelerator=settings.accelerator,
        devices=settings.devices, precision=settings.precision, distributed=settings.distributed,
        patience=settings.patience, callbacks=list(settings.callbacks), progress=settings.progress,
        checkpoint_every=settings.checkpoint_every, fixed_input_size=task.fixed_input_size, **settings.trainer,
    )  # fmt: skip
    if checkpoint is not None and first:
        print(f"resuming from {checkpoint}", file=sys.stderr)
    try:
        with quiet_lightning():
            # weights_only: a checkpoint file is data, never code (optimizer, loops and history are plain values).
            trainer.fit(task, datamodule=RunData(*loaders), ckpt_path=checkpoint, weights_only=True)
    except TrainingError:
        raise  # resuming would diverge again: its message says what to change instead
    except RuntimeError as error:
        if checkpoint is not None and "state_dict" in str(error):
            raise ConfigError(f"{checkpoint}: the checkpoint does not fit this task's model ({error})") from error
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
            f"fit stopped; {run_dir} keeps every finished epoch. Continue with fit(..., resume={str(run_dir)!r}) "
            f"or `visionheads fit RECIPE resume={run_dir}`",
            file=sys.stderr,
        )
