"""Builds the lightning.Trainer: device and precision policy, progress display, checkpoints, early stopping."""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import sys
import time
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import Callback, EarlyStopping, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger

from visionheads.errors import ConfigError

# Lightning's advice that does not apply to how fit() drives it; everything else stays visible.
for _message in (
    r".*exists and is not empty.*",  # our run folder is created (and holds config.yaml) before the logger
    r".*does not have many workers.*",  # on CPU, loading in the training process is the faster choice
    r".*isinstance\(treespec, LeafSpec\).*",
    r".*You defined a `validation_step` but have no `val_dataloader`.*",  # fit(val=False) is a choice
    r".*The number of training batches \(\d+\) is smaller than the logging interval.*",
    r".*Detected pickle protocol 4 in the checkpoint.*",  # Lightning's last.ckpt; weights_only reads it fine
):
    warnings.filterwarnings("ignore", message=_message)


def resolve_accelerator(devices: int | str | list[int]) -> str:
    """The accelerator: gpu when CUDA is present (and devices allow it), else cpu."""
    if devices == "cpu":
        return "cpu"
    return "gpu" if torch.cuda.is_available() else "cpu"


def resolve_precision(precision: str | int, accelerator: str) -> str:
    """Precision for "auto": bf16 mixed on GPUs that support it, fp16 mixed on older GPUs, float32 on the CPU."""
    if precision != "auto":
        return str(precision)
    if accelerator == "gpu":
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "32-true"


EPOCH_LINE_VALUES = 10


def epoch_line(row: dict[str, float], total_epochs: int, seconds: float | None = None) -> str:
    """`epoch 3/10  train_loss=0.1234  val_loss=0.2345  (1.3s)` for one History row."""
    values = [f"{k}={v:.4f}" for k, v in row.items() if k != "epoch" and isinstance(v, float)]
    if len(values) > EPOCH_LINE_VALUES:  # e.g. one IoU per class of 80 COCO classes: those stay in metrics.csv
        values = [*values[:EPOCH_LINE_VALUES], f"(+{len(values) - EPOCH_LINE_VALUES} in metrics.csv)"]
    shown = "  ".join(values)
    timing = f"  ({seconds:.1f}s)" if seconds is not None else ""
    return f"epoch {int(row['epoch']) + 1}/{total_epochs}  {shown}{timing}"


class EpochSummary(Callback):
    """One line per epoch where no progress bar is shown (CI logs, files, notebooks without a TTY)."""

    def __init__(self, total_epochs: int) -> None:
        self.total_epochs = total_epochs
        self._start = 0.0

    def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if not trainer.is_global_zero or not getattr(module, "history_rows", None):
            return
        row = module.history_rows[-1]
        print(epoch_line(row, self.total_epochs, time.perf_counter() - self._start), flush=True)


RESUME_CHECKPOINT = "last.ckpt"  # the whole training state of a run, for fit(resume=...)


def improves(value: float, best: float | None, mode: str) -> bool:
    """Whether `value` beats `best` (None: no epoch yet) for a metric to minimise or maximise (`mode`)."""
    return best is None or (value < best if mode == "min" else value > best)


def save_last_and_best(module: Any, run_dir: Path, *, improved: bool) -> None:
    """last.pt from the module's save(); best.pt as a copy of it when this epoch improved. Both atomic."""
    module.save(run_dir / "last.pt")
    if improved:  # the same weights: copying the file is cheaper than serialising them again
        partial = run_dir / ".best.pt.partial"
        shutil.copyfile(run_dir / "last.pt", partial)
        os.replace(partial, run_dir / "best.pt")


def log_row(loggers: list, row: dict[str, float]) -> None:
    """Send one epoch's History row to every logger (metrics.csv gets it as one line)."""
    for logger in loggers:
        logger.log_metrics(row, step=int(row["epoch"]))
        logger.save()  # now, not at the end of fit: `tail -f metrics.csv` and a killed run see every epoch


class SaveBestAndLast(Callback):
    """Each epoch: last.pt (weights, for Task.load) and last.ckpt (the whole training state, for
    fit(resume=...)); best.pt when the monitored metric improves. Every file is replaced atomically."""

    def __init__(self, run_dir: Path, monitor: str, mode: str) -> None:
        self.run_dir = run_dir
        self.monitor = monitor
        self.mode = mode
        self.best: float | None = None
        self.best_epoch: int | None = None

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        row = module.history_rows[-1] if getattr(module, "history_rows", None) else None
        value = row.get(self.monitor) if row else None
        improved = value is not None and improves(value, self.best, self.mode)
        if improved:
            self.best, self.best_epoch = float(value), int(row["epoch"])
        # Every rank takes part in save_checkpoint (a sharded strategy gathers state); rank 0 writes.
        partial = self.run_dir / f".{RESUME_CHECKPOINT}.partial"
        trainer.save_checkpoint(partial, weights_only=False)
        if not trainer.is_global_zero or row is None:
            return
        os.replace(partial, self.run_dir / RESUME_CHECKPOINT)  # a crash mid-write leaves the previous one
        save_last_and_best(module, self.run_dir, improved=improved)

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best, self.best_epoch = state_dict["best"], state_dict["best_epoch"]


def run_loggers(run_dir: Path) -> list:
    """metrics.csv in the run folder, and TensorBoard event files beside it when tensorboard is installed."""
    loggers = [CSVLogger(save_dir=str(run_dir), name="", version="")]
    if importlib.util.find_spec("tensorboard") is not None:
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(save_dir=str(run_dir), name="", version="tensorboard"))
    return loggers


def quiet_lightning_info() -> None:
    """Hide Lightning's start-up chatter (device lines, tips); fit() prints its own one-line summary."""
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
    logging.getLogger("lightning.fabric.utilities.rank_zero").setLevel(logging.WARNING)


def build_trainer(
    *,
    run_dir: Path,
    epochs: int,
    monitor: str,
    mode: str,
    devices: int | str | list[int] = "auto",
    precision: str | int = "auto",
    distributed: str = "auto",
    patience: int | None = None,
    callbacks: list[Callback] | None = None,
    progress: bool | None = None,
    **trainer_kwargs: Any,
) -> tuple[L.Trainer, SaveBestAndLast]:
    """The Trainer used by Task.fit, and the checkpoint callback that knows the best epoch."""
    quiet_lightning_info()
    accelerator = resolve_accelerator(devices)
    if devices == "cpu":
        devices = "auto"
    if progress is None:
        progress = sys.stderr.isatty()
    saver = SaveBestAndLast(run_dir, monitor, mode)
    all_callbacks: list[Callback] = [RecordHistory(), saver, *(callbacks or [])]
    all_callbacks.append(TQDMProgressBar(leave=True) if progress else EpochSummary(epochs))  # a bar per epoch
    if patience is not None:
        all_callbacks.append(EarlyStopping(monitor=monitor, mode=mode, patience=patience))
    try:
        trainer = L.Trainer(
            accelerator=accelerator,
            devices=devices,
            strategy=distributed,
            precision=resolve_precision(precision, accelerator),
            max_epochs=epochs,
            default_root_dir=str(run_dir),
            logger=run_loggers(run_dir),
            callbacks=all_callbacks,
            enable_progress_bar=progress,
            enable_checkpointing=False,  # SaveBestAndLast writes our own atomic single-file checkpoints
            enable_model_summary=False,
            log_every_n_steps=1,
            **trainer_kwargs,
        )
    except (TypeError, ValueError, MisconfigurationException) as error:
        raise ConfigError(f"invalid training option: {error}") from error
    print(
        f"training on {accelerator} ({trainer.num_devices} device(s), precision {trainer.precision}) "
        f"for {epochs} epoch(s); run folder {run_dir}",
        file=sys.stderr,
    )
    return trainer, saver


class RecordHistory(Callback):
    """Appends the module's epoch row to its history (first, so later callbacks see the finished epoch)
    and sends it to the loggers as one row: metrics.csv gets one line per epoch."""

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        # A resumed fit restored its finished epochs from last.ckpt; the new metrics.csv starts with them.
        for row in module.history_rows:
            log_row(trainer.loggers, row)

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        row = module.epoch_row()
        module.history_rows.append(row)
        log_row(trainer.loggers, row)


def new_run_dir(project: str | Path, task_name: str, name: str | None) -> Path:
    """runs/<task>/<name or timestamp>, made unique with a -2, -3... suffix (as Ultralytics does)."""
    base = Path(project) / task_name / (name or datetime.now().strftime("%Y%m%d-%H%M%S"))
    candidate, counter = base, 2
    while candidate.exists():
        candidate = base.with_name(f"{base.name}-{counter}")
        counter += 1
    candidate.mkdir(parents=True)
    return candidate
