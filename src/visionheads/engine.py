"""Builds the lightning.Trainer: device and precision policy, progress display, history, checkpoints, loggers.

Checkpoints: `RunRecord` writes last.ckpt (the whole training state) after an epoch once `checkpoint_every` seconds
have passed (and after the last), best.pt when the monitored metric improves, and last.pt when training ends, all
through `AtomicCheckpointIO`. Lightning's ModelCheckpoint is
not used because, in Lightning 2.6, `save_last=True` with a monitor rewrites `last` only on epochs that improve the
monitor (measured: after 4 epochs whose best was epoch 2, last.ckpt held epoch 2), and its save writes through a
temporary file in the system temp folder that is then moved, which copies (not renames) across file systems.
"""

from __future__ import annotations

import contextlib
import gc
import importlib.util
import logging
import os
import signal
import sys
import time
import warnings
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.distributed as dist
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import Callback, Checkpoint, EarlyStopping, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger, Logger
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from lightning.pytorch.plugins.io import AsyncCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException
from torch.utils.data import DataLoader

from visionheads._atomic import write_atomically
from visionheads.errors import ConfigError
from visionheads.trackers import given_loggers

RESUME_CHECKPOINT = "last.ckpt"  # the whole training state of a run, for fit(resume=...)
LAST_WEIGHTS, BEST_WEIGHTS = "last.pt", "best.pt"
EPOCH_LINE_VALUES = 10

# Lightning's advice that does not apply to how fit() and evaluate() drive it, hidden for their duration only;
# everything else stays visible (tests/test_quiet_console.py fits every recipe and fails on any warning it prints).
_QUIET_MESSAGES = (
    r".*exists and is not empty.*",  # our run folder is created (and holds config.yaml) before the logger
    r".*does not have many workers.*",  # on CPU, loading in the training process is the faster choice
    # torch deprecates building its LeafSpec (FutureWarning), which Lightning's loop-state pytree helper does: the
    # same spec either way, and Lightning's call to change
    r".*isinstance\(treespec, LeafSpec\).*",
    r".*You defined a `validation_step` but have no `val_dataloader`.*",  # fit(val=False) is a choice
    r".*Detected pickle protocol 4 in the checkpoint.*",  # Lightning's last.ckpt; weights_only reads it fine
    r".*when logging on epoch level in distributed setting.*",  # our epoch values are synced torchmetrics states
    # the task normalises batches on the device in its own hook and RunData (the datamodule) has none: as meant
    r".*overridden `on_after_batch_transfer` in `LightningModule` but have passed in a `LightningDataModule`.*",
)
_LIGHTNING_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """Hide Lightning's start-up chatter and the warnings listed above, for the duration of the block only."""
    loggers = [logging.getLogger(name) for name in _LIGHTNING_LOGGERS]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        for message in _QUIET_MESSAGES:
            warnings.filterwarnings("ignore", message=message)
        for logger in loggers:
            logger.setLevel(logging.WARNING)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels, strict=True):
                logger.setLevel(level)


@contextlib.contextmanager
def objects_frozen() -> Iterator[None]:
    """Keep the objects alive now (torch's, Lightning's, timm's: ~500,000) out of Python's cyclic garbage collections
    for the duration of the block: each full collection walks them all (0.2 s), and a training loop allocates
    enough to run several an epoch (a CamVid epoch of 45 steps: 44.1 s, 40.7 s frozen; bench/README.md). Objects
    made inside the block are collected as always; `gc.unfreeze` hands the others back at the end."""
    # Collected first: an earlier fit's garbage (its Trainer and module hold each other, and through them a model,
    # perhaps on a GPU) is freed now instead of being kept through this fit.
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def resolve_accelerator(accelerator: str = "auto", devices: int | str | list[int] = "auto") -> str:
    """The accelerator: gpu when CUDA is present (unless `accelerator` or `devices="cpu"` says otherwise), else cpu."""
    if accelerator != "auto":
        return accelerator
    if devices == "cpu":
        return "cpu"
    return "gpu" if torch.cuda.is_available() else "cpu"


def resolve_precision(precision: str | int, accelerator: str) -> str:
    """Precision for "auto": bf16 mixed on GPUs that support it, fp16 mixed on older GPUs, float32 on the CPU."""
    if precision != "auto":
        return str(precision)
    if accelerator in ("gpu", "cuda"):
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "32-true"


def launched_as_another_process() -> bool:
    """Whether this is a DDP process other than the first, as its launcher's environment says before the process
    group exists (Lightning's own launcher sets LOCAL_RANK/NODE_RANK, torchrun RANK, SLURM SLURM_PROCID)."""
    return any(os.environ.get(name, "0") != "0" for name in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"))


def inference_device() -> torch.device:
    """Where evaluate/predict run without a Trainer: CUDA when available, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def default_workers() -> int:
    """DataLoader workers: several where a GPU does the maths; none on the CPU, where they compete for the cores."""
    return min(8, (os.cpu_count() or 1) - 1) if torch.cuda.is_available() else 0


def epoch_line(row: dict[str, float], total_epochs: int, seconds: float | None = None) -> str:
    """`epoch 3/10  train_loss=0.1234  val_loss=0.2345  (1.3s)` for one History row (epochs count from 1)."""
    values = [f"{k}={v:.4f}" for k, v in row.items() if k != "epoch" and isinstance(v, float)]
    if len(values) > EPOCH_LINE_VALUES:  # e.g. one IoU per class of 80 COCO classes: those stay in metrics.csv
        values = [*values[:EPOCH_LINE_VALUES], f"(+{len(values) - EPOCH_LINE_VALUES} in metrics.csv)"]
    timing = f"  ({seconds:.1f}s)" if seconds is not None else ""
    return f"epoch {int(row['epoch'])}/{total_epochs}  {'  '.join(values)}{timing}"


class RunRecord(Checkpoint):
    """What a fit leaves in its run folder. After every epoch: one History row (epochs from 1) of the epoch's
    `train_*` values and, if it was validated, its `val_*` values, kept in `rows`, written to the loggers (one line
    of metrics.csv) and printed where no progress bar is shown; last.ckpt, the whole training state (for
    fit(resume=...) and Task.load), once `checkpoint_every` seconds of training have passed since the previous one
    (0: every epoch), and after the last epoch; best.pt (weights and config) when a validation `monitor` improves.
    When training ends: last.pt (weights and config), and best.pt too where nothing was validated.

    The interval bounds what checkpoints cost where epochs are short: on 1-second epochs a 14 MB training state
    written every epoch cost 6-8 % of the fit (bench/README.md); an epoch longer than the interval is saved as before.

    As a `Checkpoint`, it runs after the task's own epoch-end hook (which logs the train_* means) and after early
    stopping, so the state it saves holds the epoch's row and counters. The files are written by a background thread
    (`checkpoint_io` below) from copies of the tensors taken here, each through a temporary file and a rename.
    """

    def __init__(
        self,
        run_dir: Path,
        monitor: str,
        mode: str,
        *,
        total_epochs: int,
        print_lines: bool,
        checkpoint_every: float = 0.0,
    ) -> None:
        self.run_dir = run_dir
        self.checkpoint_every = checkpoint_every
        self.monitor = monitor
        self.mode = mode
        self.total_epochs = total_epochs
        self.print_lines = print_lines
        self.rows: list[dict[str, float]] = []
        self.best: float | None = None
        self.best_epoch: int | None = None
        self._start = 0.0
        self._saved = 0.0  # when last.ckpt was last written
        self._validated_epoch = -1  # the epoch (from 0) whose validation ran last: its val_* values are current
        self.interrupted: int | None = None  # signal.SIGINT or SIGTERM when the fit was stopped by one

    def setup(self, trainer: L.Trainer, module: L.LightningModule, stage: str) -> None:
        # Only the first process makes a run folder; under DDP the others learn its path here, once the process
        # group exists (torchrun and SLURM start every process at once, each with its own idea of a new folder).
        self.run_dir = Path(trainer.strategy.broadcast(str(self.run_dir), src=0))

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._saved = time.perf_counter()
        # A resumed fit restored its finished epochs from last.ckpt; the new metrics.csv starts with them.
        for row in self.rows:
            _log_row(trainer, row)

    def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._validated_epoch = trainer.current_epoch

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        row: dict[str, float] = {"epoch": trainer.current_epoch + 1}
        # Lightning keeps the last validation's values in callback_metrics: an epoch without one gets none of them.
        validated = self._validated_epoch == trainer.current_epoch
        for prefix in ("train_", "val_") if validated else ("train_",):
            for key, value in trainer.callback_metrics.items():
                if key.startswith(prefix) and value.numel() == 1:
                    row[key] = float(value)
        self.rows.append(row)
        _log_row(trainer, row)
        if self.print_lines and trainer.is_global_zero:
            print(epoch_line(row, self.total_epochs, time.perf_counter() - self._start), flush=True)
        value = row.get(self.monitor) if self.validated else None
        improved = value is not None and improves(value, self.best, self.mode)
        if improved:
            self.best, self.best_epoch = value, int(row["epoch"])
        # Every rank takes part in save_checkpoint (a sharded strategy gathers state); rank 0 writes.
        now = time.perf_counter()
        final = trainer.should_stop or trainer.current_epoch + 1 >= (trainer.max_epochs or 0)
        # The first process's clock decides: every process must enter save_checkpoint (and its barrier) together.
        if trainer.strategy.broadcast(final or now - self._saved >= self.checkpoint_every, src=0):
            trainer.save_checkpoint(self.run_dir / RESUME_CHECKPOINT, weights_only=False)
            self._saved = now
        if improved:
            trainer.save_checkpoint(self.run_dir / BEST_WEIGHTS, weights_only=True)
        elif not self.validated:
            self.best_epoch = int(row["epoch"])  # without validation, "best" is the last epoch (best.pt at the end)

    def on_train_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        # Per epoch, last.ckpt already holds these weights; a file of weights alone is written once, at the end.
        trainer.save_checkpoint(self.run_dir / LAST_WEIGHTS, weights_only=True)
        if not self.validated:
            trainer.save_checkpoint(self.run_dir / BEST_WEIGHTS, weights_only=True)

    def on_exception(self, trainer: L.Trainer, module: L.LightningModule, exception: BaseException) -> None:
        # Lightning turns Ctrl-C into exit(1) and SIGTERM into an exception meaning exit(0); fit needs to know which.
        if isinstance(exception, KeyboardInterrupt):
            self.interrupted = signal.SIGINT
        elif isinstance(exception, SIGTERMException):
            self.interrupted = signal.SIGTERM

    @property
    def validated(self) -> bool:
        """Whether the monitor is a validation value (else best.pt is the last epoch's weights)."""
        return self.monitor.startswith("val_")

    def state_dict(self) -> dict[str, Any]:
        return {"rows": [dict(row) for row in self.rows], "best": self.best, "best_epoch": self.best_epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = [dict(row) for row in state_dict["rows"]]
        self.best, self.best_epoch = state_dict["best"], state_dict["best_epoch"]


def _log_row(trainer: L.Trainer, row: dict[str, float]) -> None:
    for logger in trainer.loggers:
        logger.log_metrics(row, step=int(row["epoch"]))
        logger.save()  # now, not at the end of fit: `tail -f metrics.csv` and a killed run see every epoch


def improves(value: float, best: float | None, mode: str) -> bool:
    """Whether `value` beats `best` (None: no epoch yet) for a metric to minimise or maximise (`mode`)."""
    return best is None or (value < best if mode == "min" else value > best)


class ValidationSchedule(Callback):
    """Validation after every `every`-th epoch and after the last of `epochs` (Lightning's check_val_every_n_epoch
    alone skips the last when `every` does not divide the epochs, and the fit keeps its best validated epoch)."""

    def __init__(self, every: int, epochs: int) -> None:
        self.every, self.epochs = every, epochs

    def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        epoch = trainer.current_epoch + 1
        due = epoch % self.every == 0 or epoch >= self.epochs
        # Lightning validates after epoch e (from 1) when check_val_every_n_epoch divides e: 1 always does, and a
        # period longer than the fit never does.
        trainer.check_val_every_n_epoch = 1 if due else self.epochs + 1


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's torch.save checkpoint IO, writing through a temporary file beside the target and a rename.

    Not fsynced: the files of a run are rewritten every epoch, and the rename already keeps a crash from leaving
    half of one (see `write_atomically`); Task.save, which a user calls once, is fsynced.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        write_atomically(path, lambda file: torch.save(checkpoint, file), durable=False)


def checkpoint_io() -> AsyncCheckpointIO:
    """Atomic writes in a background thread: training goes on while an epoch's checkpoints reach the disk
    (Lightning clones the tensors first, and waits for the writes when the fit ends or fails)."""
    return AsyncCheckpointIO(AtomicCheckpointIO())


def run_loggers(run_dir: Path, extra: Any = None, *, experiment: str = "visionheads") -> list:
    """metrics.csv in the run folder, TensorBoard event files beside it when tensorboard is installed, and the
    user's trackers (`extra`: a name, a Lightning logger, a list of them, or None/False/True for none; see
    trackers.py): beside ours, never instead, so that the run folder always holds the history."""
    loggers: list[Logger] = [CSVLogger(save_dir=str(run_dir), name="", version="")]
    if importlib.util.find_spec("tensorboard") is not None:
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(save_dir=str(run_dir), name="", version="tensorboard"))
    return loggers + given_loggers(extra, run_dir, experiment=experiment)


class RunData(L.LightningDataModule):
    """The loaders of one fit or evaluation. Under DDP, Lightning shards training data with its DistributedSampler;
    evaluation data is sharded here so that each sample is evaluated exactly once (that sampler pads the shares
    to equal length with repeated samples, which would count them twice in dataset-wide metrics)."""

    def __init__(
        self, train: DataLoader | None = None, val: DataLoader | None = None, test: DataLoader | None = None
    ) -> None:
        super().__init__()
        self.train, self.val, self.test = train, val, test
        for name, loader in (("train", train), ("val", val), ("test", test)):
            if loader is None:  # undefined for Lightning (no hook), rather than defined and empty, which it warns of
                setattr(self, f"{name}_dataloader", None)

    def train_dataloader(self) -> DataLoader:
        return self.train

    def val_dataloader(self) -> DataLoader:
        return evaluated_once(self.val)

    def test_dataloader(self) -> DataLoader:
        return evaluated_once(self.test)


def evaluated_once(loader: DataLoader) -> DataLoader:
    """`loader` restricted to this process's share of its samples when several processes run (each sample in
    exactly one share; the shares may differ by one sample), else `loader` itself."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return loader
    shares = UnrepeatedDistributedSampler(
        loader.dataset, num_replicas=dist.get_world_size(), rank=dist.get_rank(), shuffle=False
    )
    return DataLoader(
        loader.dataset, batch_size=loader.batch_size, sampler=shares, collate_fn=loader.collate_fn,
        num_workers=loader.num_workers, pin_memory=loader.pin_memory,
        persistent_workers=loader.persistent_workers, generator=loader.generator,
    )  # fmt: skip


def build_trainer(
    *,
    run_dir: Path,
    experiment: str = "visionheads",
    epochs: int,
    monitor: str,
    mode: str,
    accelerator: str = "auto",
    devices: int | str | list[int] = "auto",
    precision: str | int = "auto",
    distributed: str = "auto",
    patience: int | None = None,
    val_every: int = 1,
    callbacks: list[Callback] | None = None,
    progress: bool | None = None,
    checkpoint_every: float = 0.0,
    fixed_input_size: bool = True,
    **trainer_kwargs: Any,
) -> tuple[L.Trainer, RunRecord]:
    """The Trainer of Task.fit, and the callback that records its history and writes its checkpoints.

    On GPUs: mixed precision (`resolve_precision`), and cuDNN's benchmark mode where every batch has the input size
    (it times the convolution algorithms once per shape, a loss where shapes vary, as in R-CNN's resizing). Pinned
    memory is the loaders' (`make_loader`); Lightning copies batches to the GPU with non_blocking=True."""
    accelerator = resolve_accelerator(accelerator, devices)
    trainer_kwargs.setdefault("benchmark", accelerator in ("gpu", "cuda") and fixed_input_size)
    if devices == "cpu":
        devices = "auto"
    if progress is None:
        progress = sys.stderr.isatty()
    loggers = run_loggers(run_dir, trainer_kwargs.pop("logger", None), experiment=experiment)
    record = RunRecord(
        run_dir, monitor, mode, total_epochs=epochs, print_lines=not progress, checkpoint_every=checkpoint_every
    )
    all_callbacks: list[Callback] = [record, ValidationSchedule(val_every, epochs), *(callbacks or [])]
    if progress:
        all_callbacks.append(TQDMProgressBar(leave=True))  # a kept bar per epoch, with its validation metrics
    if patience is not None:
        # A validation monitor is checked after each validation (so patience counts validations), a training one
        # after each epoch.
        check_after_epoch = not record.validated
        all_callbacks.append(
            EarlyStopping(monitor=monitor, mode=mode, patience=patience, check_on_train_epoch_end=check_after_epoch)
        )
    trainer = _trainer(
        accelerator=accelerator,
        devices=devices,
        strategy=distributed,
        precision=resolve_precision(precision, accelerator),
        max_epochs=epochs,
        default_root_dir=str(run_dir),
        logger=loggers,
        callbacks=all_callbacks,
        enable_progress_bar=progress,
        enable_model_summary=False,
        log_every_n_steps=1,
        plugins=[checkpoint_io()],
        **trainer_kwargs,
    )
    if not launched_as_another_process():
        print(
            f"training on {accelerator} ({trainer.num_devices} device(s), precision {trainer.precision}) "
            f"for {epochs} epoch(s); run folder {run_dir}",
            file=sys.stderr,
        )
    return trainer, record


def build_evaluator(
    *,
    accelerator: str = "auto",
    devices: int | str | list[int] = 1,
    precision: str | int = "auto",
    distributed: str = "auto",
    progress: bool | None = None,
) -> L.Trainer:
    """A Trainer for one evaluation pass (Trainer.test): no loggers, no checkpoints, a bar only on a terminal."""
    accelerator = resolve_accelerator(accelerator, devices)
    return _trainer(
        accelerator=accelerator,
        devices="auto" if devices == "cpu" else devices,
        strategy=distributed,
        precision=resolve_precision(precision, accelerator),
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=sys.stderr.isatty() if progress is None else progress,
    )


def _trainer(**options: Any) -> L.Trainer:
    try:
        with quiet_lightning():
            return L.Trainer(**options)
    except (TypeError, ValueError, MisconfigurationException) as error:
        raise ConfigError(f"invalid training option: {error}") from error


def new_run_dir(project: str | Path, task_name: str, name: str | None) -> Path:
    """runs/<task>/<name or timestamp>, made unique with a -2, -3... suffix (as Ultralytics does)."""
    base = Path(project) / task_name / (name or datetime.now().strftime("%Y%m%d-%H%M%S"))
    base.parent.mkdir(parents=True, exist_ok=True)
    candidate, counter = base, 1
    while True:
        try:
            candidate.mkdir()  # exist_ok=False: of two fits racing for one name, the later takes the next suffix
            return candidate
        except FileExistsError:
            counter += 1
            candidate = base.with_name(f"{base.name}-{counter}")
