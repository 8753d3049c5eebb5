"""One training run of a task: check the data, pick the run folder, drive the Trainer, keep the best epoch."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning as L
import torch
import yaml

from visionheads.data.sources import Source
from visionheads.engine import RESUME_CHECKPOINT, build_trainer, new_run_dir
from visionheads.errors import ConfigError
from visionheads.tasks._checkpoint import read_checkpoint
from visionheads.tasks._loading import check_first_sample, task_loader
from visionheads.tasks.history import History

if TYPE_CHECKING:
    from visionheads.tasks.base import Task

STRATEGIES = ("auto", "scratch", "features", "freeze", "finetune")
FINETUNE_BODY_LR_SCALE = 0.1  # pretrained bodies move slower than fresh heads (Keras / timm fine-tuning practice)


def optimizer_and_schedule(task: Task, settings: dict[str, Any], total_steps: int) -> dict[str, Any]:
    """AdamW over body and head groups (body at 0.1x for finetune) with a one-cycle schedule per step."""
    lr = settings["lr"]
    groups = [{"params": list(task.head.parameters()), "lr": lr, "name": "head"}]
    if settings["strategy"] in ("scratch", "finetune"):
        body_lr = lr * (FINETUNE_BODY_LR_SCALE if settings["strategy"] == "finetune" else 1.0)
        groups.insert(0, {"params": list(task.backbone.parameters()), "lr": body_lr, "name": "body"})
    optimizer = torch.optim.AdamW(groups, weight_decay=settings["weight_decay"])
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=[group["lr"] for group in groups], total_steps=max(1, total_steps), pct_start=0.2
    )
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


def resume_checkpoint(resume: str | Path) -> Path:
    """The last.ckpt of a run folder (or the file itself); ConfigError naming what is missing."""
    path = Path(resume).expanduser()
    checkpoint = path / RESUME_CHECKPOINT if path.is_dir() else path
    if not checkpoint.is_file():
        raise ConfigError(
            f"resume={str(resume)!r}: no {RESUME_CHECKPOINT} there; pass the run folder of an interrupted fit "
            f"(it holds {RESUME_CHECKPOINT}, written after every epoch) or that file itself"
        )
    return checkpoint


def resolve_sources(task: Task, train: Any, val: Any) -> tuple[Source, Source | None]:
    """Train and val Sources, checked down to their first sample before any training starts."""
    train_source = task.resolve(train)
    if val is None and train_source.val and train_source.description.endswith(":train"):
        val = train_source.val
    val = None if val is False else val
    task.check_data(train_source, fitting=True)
    val_source = task.resolve(val) if val is not None else None
    if val_source is not None:
        task.check_data(val_source, fitting=False)
    for source in (train_source, val_source):
        check_first_sample(task, source)
    return train_source, val_source


def run_fit(
    task: Task,
    train: Any,
    val: Any,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    strategy: str,
    weight_decay: float,
    num_workers: int | None,
    project: str | Path,
    name: str | None,
    plots: bool,
    resume: str | Path | None,
    trainer_options: dict[str, Any],
) -> History:
    """Task.fit's body (see its docstring)."""
    if strategy not in STRATEGIES:
        raise ConfigError(f"unknown strategy {strategy!r}; use one of {STRATEGIES}")
    if epochs < 1 or batch_size < 1 or not lr > 0:
        raise ConfigError(f"epochs, batch_size and lr must be positive (got {epochs}, {batch_size}, {lr})")
    checkpoint = resume_checkpoint(resume) if resume else None
    L.seed_everything(task.seed, verbose=False)
    train_source, val_source = resolve_sources(task, train, val)
    if strategy == "auto":
        strategy = "finetune" if task.backbone.weights is not None else "scratch"
    if checkpoint is not None and strategy == "features":
        raise ConfigError("resume works with the trained strategies (scratch, freeze, finetune), not 'features'")
    task.run_dir = checkpoint.parent if checkpoint is not None else new_run_dir(project, task.name, name)
    settings = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "strategy": strategy}
    data = {"train": train_source.description, "val": val_source.description if val_source else None}
    (task.run_dir / "config.yaml").write_text(yaml.safe_dump({"task": task.config, "fit": settings | data}))
    if strategy == "features":
        from visionheads.tasks._features import fit_on_features

        return fit_on_features(
            task, train_source, val_source, epochs=epochs, batch_size=batch_size, lr=lr,
            weight_decay=weight_decay, plots=plots,
        )  # fmt: skip
    task._fit_settings = {
        "lr": lr,
        "weight_decay": weight_decay,
        "strategy": strategy,
        "freeze_epochs": max(1, epochs // 5) if strategy == "finetune" and epochs > 1 else 0,
    }
    task.set_body_frozen(strategy == "freeze")
    if num_workers is None:
        # Loading in worker processes pays off when a GPU does the maths; on CPU they compete for the cores.
        num_workers = min(8, (os.cpu_count() or 1) - 1) if torch.cuda.is_available() else 0
    train_loader = task_loader(task, train_source, train=True, batch_size=batch_size, num_workers=num_workers)
    val_loader = None
    if val_source is not None:
        val_loader = task_loader(task, val_source, train=False, batch_size=batch_size, num_workers=num_workers)
    monitor, mode = task.monitor if val_loader is not None else ("train_loss", "min")
    trainer, saver = build_trainer(
        run_dir=task.run_dir, epochs=epochs, monitor=monitor, mode=mode, **trainer_options
    )  # fmt: skip
    task.history_rows = []
    task._reset_epoch_state()
    if checkpoint is not None:
        print(f"resuming from {checkpoint}", file=sys.stderr)
    try:
        # weights_only: a checkpoint file is data, never code (optimizer, loops and history are plain values).
        trainer.fit(task, train_loader, val_loader, ckpt_path=checkpoint, weights_only=True)
    except RuntimeError as error:
        if checkpoint is not None and "state_dict" in str(error):
            raise ConfigError(f"{checkpoint}: the checkpoint does not fit this task's model ({error})") from error
        _say_how_to_resume(task.run_dir)
        raise
    except BaseException:  # Ctrl-C arrives as SystemExit from Lightning's graceful shutdown
        _say_how_to_resume(task.run_dir)
        raise
    task.set_body_frozen(False)
    validated = val_loader is not None and task.history_rows
    if validated and saver.best_epoch is not None and saver.best_epoch != task.history_rows[-1]["epoch"]:
        _, best_state = read_checkpoint(task.run_dir / "best.pt")
        task.load_state_dict(best_state)  # keep the best validated epoch, as Keras' restore_best_weights
    task.history = History(list(task.history_rows), task.run_dir, saver.best_epoch, monitor)
    task.last_evaluated = val_source
    if plots:
        task.plot(task.run_dir)
    print(f"results saved to {task.run_dir}", file=sys.stderr)
    return task.history


def _say_how_to_resume(run_dir: Path) -> None:
    if (run_dir / RESUME_CHECKPOINT).is_file():
        print(
            f"fit stopped; {run_dir} keeps every finished epoch. Continue with fit(..., resume={str(run_dir)!r}) "
            f"or `visionheads fit RECIPE resume={run_dir}`",
            file=sys.stderr,
        )
